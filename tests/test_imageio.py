"""Image I/O: PNG/JPEG in every mode and bit depth, and clear errors for bad files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from cxrxai.errors import ImageReadError
from cxrxai.imageio import linear_window, read_image


@pytest.fixture()
def gradient() -> np.ndarray:
    """A 40x60 8-bit ramp: column j has value 4*j."""
    return np.tile((np.arange(60) * 4).astype(np.uint8), (40, 1))


def test_png_8bit_gray_maps_to_unit_range(tmp_path, gradient):
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), gradient)
    image = read_image(path)
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == (40, 60) == image.shape
    np.testing.assert_allclose(image.pixels, gradient / 255.0, atol=1e-7)
    assert image.meta.bits_stored == 8 and image.meta.file_format == "PNG"


def test_png_16bit_keeps_full_precision(tmp_path):
    values = np.array([[0, 1, 4095, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), values)
    image = read_image(path)
    assert image.meta.bits_stored == 16
    np.testing.assert_allclose(image.pixels, values / 65535.0, rtol=1e-6)


def test_png_16bit_rgb_is_not_cut_to_8bit(tmp_path):
    values = np.full((4, 4, 3), 1000, dtype=np.uint16)
    path = tmp_path / "deep_rgb.png"
    cv2.imwrite(str(path), values)
    image = read_image(path)
    np.testing.assert_allclose(image.pixels, 1000 / 65535.0, rtol=1e-3)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P"])
def test_colour_modes_become_gray(tmp_path, gradient, mode):
    rgb = Image.fromarray(gradient).convert(mode)
    path = tmp_path / f"img_{mode}.png"
    rgb.save(path)
    image = read_image(path)
    assert image.pixels.shape == gradient.shape
    np.testing.assert_allclose(image.pixels, gradient / 255.0, atol=1.5 / 255)


def test_jpeg_close_to_source(tmp_path, gradient):
    path = tmp_path / "ramp.jpg"
    cv2.imwrite(str(path), gradient, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image = read_image(path)
    assert image.meta.file_format == "JPEG"
    assert np.abs(image.pixels - gradient / 255.0).mean() < 0.01


def test_reads_from_bytes_with_a_name(gradient):
    _ok, encoded = cv2.imencode(".png", gradient)
    image = read_image(encoded.tobytes(), name="upload.png")
    assert image.meta.source == "upload.png"


def test_real_nih_rgba_image_reads_as_gray(nih_root):
    rgba = [p for p in sorted((nih_root / "images").glob("*.png")) if Image.open(p).mode == "RGBA"]
    assert rgba, "the NIH subset ships 2 RGBA images"
    image = read_image(rgba[0])
    assert image.pixels.shape == (512, 512)
    assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0


# --- bad input: each error names the file and the reason -----------------------------


def _assert_clear(exc: ImageReadError, path, *words: str) -> None:
    text = str(exc)
    assert str(path) in text
    for word in words:
        assert word in text.lower(), text


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_clear(info.value, path, "empty")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("radiology report, not pixels\n" * 20)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_clear(info.value, path, "not a png, jpeg or dicom")


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    _ok, encoded = cv2.imencode(".png", noise)
    path = tmp_path / "cut.png"
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_clear(info.value, path, "truncated")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(tmp_path / "nope.png")


def test_multi_frame_image(tmp_path, gradient):
    path = tmp_path / "stack.tiff"
    frames = [Image.fromarray(gradient) for _ in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    _assert_clear(info.value, path, "3 frames")


def test_linear_window_follows_dicom_formula():
    values = np.array([0.0, 99.5, 100.0, 200.0, 1000.0])
    out = linear_window(values, center=100.0, width=201.0)
    # (x - (c - 0.5)) / (w - 1) + 0.5, clipped
    expected = np.clip((values - 99.5) / 200.0 + 0.5, 0, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    with pytest.raises(ValueError):
        linear_window(values, 0.0, 0.0)
