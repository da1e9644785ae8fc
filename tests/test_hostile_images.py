"""Hostile image files, one catalogue: each is refused with an ImageReadError naming the
file and the reason, from its header, before its pixels are decoded (a small file can
declare a huge image); the largest accepted image still reads."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cxrxai.errors import CxrxaiError, ImageReadError
from cxrxai.imageio import read_image
from cxrxai.settings import DEFAULT_MAX_IMAGE_SIDE, max_image_side


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_of_zeros(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A valid PNG of black pixels, compressed row by row (never held in memory whole):
    a few hundred KB that declare and decode to a huge image."""
    row = b"\x00" * (1 + width * bit_depth // 8)  # filter byte + pixels
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """IHDR of a gigantic image and a token IDAT: what a bomb needs to be opened."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real JPEG whose SOF marker is rewritten to declare another size."""
    _, encoded = cv2.imencode(".jpg", np.zeros((16, 16), np.uint8))
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def dicom_declaring(rows: int, columns: int) -> bytes:
    """A real DICOM (pydicom's CT_small) whose header declares another size."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, columns
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deflated_dicom(rows: int, columns: int) -> bytes:
    """A valid Deflated Explicit VR Little Endian DICOM of black 16-bit pixels: small on
    disk, ``rows * columns * 2`` bytes once inflated."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = bytes(rows * columns * 2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "png 9000x9000 16-bit": (lambda: png_of_zeros(9000, 9000, 16), "9000 x 9000 pixels"),
    "png 13000x13000": (lambda: png_header_only(13000, 13000), "13000 x 13000 pixels"),
    "png 50000x50000 (Pillow's bomb)": (
        lambda: png_header_only(50000, 50000),
        "more pixels than Pillow opens",
    ),
    "png 1x100000": (lambda: png_header_only(1, 100000), "1 x 100000 pixels"),
    "jpeg 12000x12000": (lambda: jpeg_declaring(12000, 12000), "12000 x 12000 pixels"),
    "dicom header 14000x14000": (lambda: dicom_declaring(14000, 14000), "14000 x 14000"),
    "dicom deflated 6000x6000": (lambda: deflated_dicom(6000, 6000), "inflates to more than"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_image_is_refused_before_decoding(name):
    make, reason = HOSTILE[name]
    data = make()
    assert len(data) < 8 << 20  # small files, all of them
    label = f"{name}.{'dcm' if 'dicom' in name else 'img'}"
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(data, name=label)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert label in str(info.value) and "Traceback" not in str(info.value)
    if "Pillow" not in name:  # the limit is named with the declared size
        assert f"{DEFAULT_MAX_IMAGE_SIDE} x {DEFAULT_MAX_IMAGE_SIDE}" in str(info.value) or (
            "MB" in str(info.value)
        )
    assert peak < 200 << 20  # nothing near the declared image was allocated


def test_the_largest_accepted_image_reads_and_the_limit_is_configurable(monkeypatch):
    """A 4,300 x 4,300 16-bit PNG (the largest chest detectors) reads; a lower limit
    from $CXRXAI_MAX_IMAGE_SIDE refuses it; a malformed limit is a clear error."""
    data = png_of_zeros(4300, 4300, 16)
    image = read_image(data, name="detector.png")
    assert image.shape == (4300, 4300) and image.meta.bits_stored == 16
    monkeypatch.setenv("CXRXAI_MAX_IMAGE_SIDE", "4000")
    with pytest.raises(ImageReadError, match=r"4300 x 4300 pixels.*4000 x 4000"):
        read_image(data, name="detector.png")
    monkeypatch.setenv("CXRXAI_MAX_IMAGE_SIDE", "lots")
    with pytest.raises(CxrxaiError, match="CXRXAI_MAX_IMAGE_SIDE must be a whole number"):
        max_image_side()


def test_a_file_larger_than_any_accepted_image_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRXAI_MAX_IMAGE_SIDE", "64")
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:  # sparse: 40 MB that take no disk
        handle.truncate(40 << 20)
    with pytest.raises(ImageReadError, match="the file is 40 MB; the largest accepted is 16 MB"):
        read_image(path)


def test_a_real_deflated_dicom_still_reads():
    image = read_image(get_testdata_file("image_dfl.dcm"))
    assert image.shape[0] > 0 and image.meta.file_format == "DICOM"
