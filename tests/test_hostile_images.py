"""Hostile image files, one catalogue: each is refused with an ImageReadError naming the
file and the reason, from its header, before its pixels are decoded (a small file can
declare a huge image); the largest accepted image still reads."""

from __future__ import annotations

import tracemalloc

import pytest
from hostile_files import HOSTILE, png_of_zeros
from pydicom.data import get_testdata_file

from cxrxai.environment import DEFAULT_MAX_IMAGE_SIDE, max_image_side
from cxrxai.errors import CxrxaiError, ImageReadError
from cxrxai.imageio import read_image


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
