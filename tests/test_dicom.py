"""DICOM reading on the real CR chest radiograph of pydicom-data, and bad DICOM files."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEGBaseline8Bit

from cxrxai.cases import Case
from cxrxai.errors import ImageReadError
from cxrxai.imageio import read_image


@pytest.fixture(scope="module")
def rg1(rg1_files):
    return {name: read_image(path) for name, path in rg1_files.items()}


def test_rg1_size_and_range(rg1):
    for name, image in rg1.items():
        assert image.shape == (1955, 1841), name
        assert image.pixels.dtype == np.float32
        assert 0.0 <= image.pixels.min() and image.pixels.max() <= 1.0
        assert image.meta.file_format == "DICOM"
        assert image.meta.photometric_interpretation == "MONOCHROME1"
        assert image.meta.bits_stored == 15
        assert image.meta.view_position == "PA"
        # The file says PixelSpacing 0\0: unknown, not zero millimetres.
        assert image.meta.pixel_spacing_mm is None


def test_jpeg2000_lossless_is_pixel_identical(rg1):
    np.testing.assert_array_equal(rg1["RG1_UNCR"].pixels, rg1["RG1_J2KR"].pixels)
    np.testing.assert_array_equal(rg1["RG1_UNCI"].pixels, rg1["RG1_J2KI"].pixels)
    assert "JPEG 2000" in rg1["RG1_J2KR"].meta.transfer_syntax


def test_lossy_pair_close_to_original(rg1):
    difference = np.abs(rg1["RG1_UNCR"].pixels - rg1["RG1_UNCI"].pixels)
    assert difference.mean() < 0.005
    assert not np.array_equal(rg1["RG1_UNCR"].pixels, rg1["RG1_UNCI"].pixels)


def test_monochrome1_inverted_lungs_dark(rg1):
    image = rg1["RG1_UNCR"].pixels
    height, width = image.shape
    # Lung fields (upper-middle left and right of the mediastinum) vs the spine.
    left_lung = image[height // 4 : height // 2, width // 5 : 2 * width // 5].mean()
    right_lung = image[height // 4 : height // 2, 3 * width // 5 : 4 * width // 5].mean()
    spine = image[height // 4 : height // 2, width // 2 - 40 : width // 2 + 40].mean()
    assert left_lung < spine and right_lung < spine
    assert left_lung < 0.6 and right_lung < 0.6


def test_window_is_a_parameter(rg1_files, rg1):
    header = rg1["RG1_UNCR"]
    assert header.meta.window == (15000.0, 30000.0)
    assert header.meta.window_presets == ((15000.0, 30000.0),)
    narrow = read_image(rg1_files["RG1_UNCR"], window=(10000.0, 4000.0))
    assert narrow.meta.window == (10000.0, 4000.0)
    assert narrow.pixels.std() > header.pixels.std()  # narrower window: more contrast
    np.testing.assert_allclose(header.with_window(10000.0, 4000.0).pixels, narrow.pixels)


def test_jpeg_baseline_decodes_through_pylibjpeg(tmp_path, rg1):
    """An 8-bit JPEG baseline DICOM built from RG1; decoded pixels match OpenCV's decode."""
    eight_bit = (rg1["RG1_UNCR"].pixels[::4, ::4] * 255).astype(np.uint8)
    _ok, jpeg = cv2.imencode(".jpg", eight_bit, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Rows, ds.Columns = eight_bit.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "baseline.dcm"
    ds.save_as(path, enforce_file_format=True)
    image = read_image(path)
    reference = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    assert "JPEG Baseline" in image.meta.transfer_syntax
    assert np.abs(image.pixels - reference).max() <= 2 / 255


@pytest.mark.parametrize(
    "name", ["JPGExtended.dcm", "JPEG-LL.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_other_compressed_syntaxes_decode(name):
    image = read_image(get_testdata_file(name))
    assert image.pixels.ndim == 2 and image.pixels.std() > 0.05


# --- bad DICOM --------------------------------------------------------------------------


def _write(ds: pydicom.Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def test_dicom_without_pixel_data(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    path = _write(ds, tmp_path / "nopixels.dcm")
    with pytest.raises(ImageReadError, match="no pixel data") as info:
        read_image(path)
    assert path in str(info.value)


def test_unsupported_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2 video
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    path = _write(ds, tmp_path / "mpeg.dcm")
    with pytest.raises(ImageReadError, match="transfer syntax") as info:
        read_image(path)
    assert "MPEG2" in str(info.value) and path in str(info.value)


def test_multi_frame_volume(tmp_path):
    path = get_testdata_file("emri_small.dcm")
    with pytest.raises(ImageReadError, match="multi-frame volume \\(10 frames\\)"):
        read_image(path)


def test_colour_dicom_refused():
    with pytest.raises(ImageReadError, match="RGB"):
        read_image(get_testdata_file("SC_rgb.dcm"))


def test_truncated_dicom(tmp_path, rg1_files):
    data = open(rg1_files["RG1_UNCR"], "rb").read()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_patient_identifiers_never_in_metadata(rg1_files, rg1):
    ds = pydicom.dcmread(rg1_files["RG1_UNCR"], stop_before_pixels=True)
    identifiers = [
        str(ds.get(k))
        for k in ("PatientName", "PatientID", "PatientBirthDate")
        if ds.get(k) not in (None, "")
    ]
    text = repr(rg1["RG1_UNCR"].meta) + repr(copy.copy(rg1["RG1_UNCR"].meta).__dict__)
    for identifier in identifiers:
        assert identifier not in text


def test_case_reports_missing_image_clearly(tmp_path):
    case = Case("vindr/train/abc", tmp_path / "abc.dicom", dataset="vindr-cxr")
    with pytest.raises(ImageReadError, match=r"file not found.*vindr-cxr"):
        case.load_image()
