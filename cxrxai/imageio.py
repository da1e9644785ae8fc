"""Read X-rays (PNG, JPEG, DICOM) as float32 images in [0, 1] with their metadata.

Every failure is an :class:`~cxrxai.errors.ImageReadError` naming the file and the reason.
Patient identifiers are never copied into :class:`ImageMeta`, so nothing downstream can
print or log them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrxai.dicom import read_dicom_bytes
from cxrxai.environment import max_image_side
from cxrxai.errors import CxrxaiError, ImageReadError
from cxrxai.xray import ImageMeta, XRayImage, check_size, linear_window, max_file_bytes

__all__ = ["ImageMeta", "XRayImage", "image_files", "linear_window", "read_image", "read_mask"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
RASTER_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF")
IMAGE_FILE_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)


def image_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files and folders named on a command line -> image files: a folder gives its PNG,
    JPEG and DICOM files (not its subfolders), sorted; a file is taken as it is (its
    reading says if it is no image). A path that does not exist is an error."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_FILE_SUFFIXES
            )
            if not inside:
                raise CxrxaiError(f"Folder '{path}' holds no PNG, JPEG or DICOM file.")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise CxrxaiError(f"'{path}' does not exist.")
    return found


def read_image(
    source: str | Path | bytes,
    *,
    name: str | None = None,
    window: tuple[float, float] | None = None,
    max_side: int | None = None,
) -> XRayImage:
    """Read a PNG, JPEG or DICOM X-ray from a path or from bytes (an upload).

    Args:
        source: a file path, or the file's bytes.
        name: how to name the file in messages when ``source`` is bytes.
        window: DICOM only: (center, width) to display with instead of the file's own
            VOI LUT / window. Ignored for PNG and JPEG.
        max_side: the largest width or height accepted (default
            :func:`cxrxai.environment.max_image_side`, 5,000 px). Checked from the header,
            before any pixel is decoded: a small file can declare a huge image (a 164 KB
            PNG of 13,000 x 13,000 pixels).

    Returns:
        :class:`XRayImage` with float32 pixels in [0, 1].
    """
    limit = max_side or max_image_side()
    data, label = _read_bytes(source, name, max_file_bytes(limit))
    if not data:
        raise ImageReadError(label, "the file is empty (0 bytes)")
    if _looks_like_dicom(data, label):
        return read_dicom_bytes(data, label, window=window, max_side=limit)
    return _read_raster(data, label, limit)


def read_mask(path: str | Path) -> np.ndarray:
    """A binary mask image (any non-zero pixel is inside) as a bool HxW array."""
    image = read_image(path)
    return image.pixels > 0


def _read_bytes(source: str | Path | bytes, name: str | None, max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        label = name or "<uploaded file>"
        _check_file_size(label, len(source), max_bytes)
        return bytes(source), label
    path = Path(source)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if path.is_dir():
        raise ImageReadError(path, "this is a folder, not an image file")
    try:
        _check_file_size(str(path), path.stat().st_size, max_bytes)
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise ImageReadError(path, f"the file cannot be opened ({exc.strerror})") from exc


def _check_file_size(label: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageReadError(
            label,
            f"the file is {size / 2**20:.0f} MB; the largest accepted is "
            f"{max_bytes / 2**20:.0f} MB (an uncompressed 16-bit image of the largest "
            "accepted size)",
        )


def _looks_like_dicom(data: bytes, label: str) -> bool:
    # Part 10 files carry "DICM" at byte 128; older headerless files only by extension.
    return data[128:132] == b"DICM" or label.lower().endswith(DICOM_SUFFIXES)


def _read_raster(data: bytes, label: str, max_side: int) -> XRayImage:
    # Pillow identifies the format and catches truncation and multi-frame files with clear
    # errors; OpenCV then decodes, because it keeps 16-bit RGB PNGs that Pillow cuts to 8 bit.
    # The declared size is checked before either decodes a pixel.
    try:
        with Image.open(io.BytesIO(data)) as probe:
            file_format = probe.format or "unknown"
            check_size(label, *probe.size, max_side)
            frames = getattr(probe, "n_frames", 1)
            probe.load()
    except Image.DecompressionBombError as exc:  # declared > 179 M pixels: Pillow refuses
        raise ImageReadError(
            label,
            f"the image declares more pixels than Pillow opens at all ({exc}); the largest "
            f"accepted is {max_side} x {max_side}",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(
            label, "not a PNG, JPEG or DICOM image (the file's content is not recognised)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(label, f"the image data is damaged or truncated ({exc})") from exc
    if file_format not in RASTER_FORMATS:
        raise ImageReadError(
            label, f"{file_format} images are not supported; use PNG, JPEG or DICOM"
        )
    if frames > 1:
        raise ImageReadError(
            label, f"the file holds {frames} frames; a single 2-D X-ray is expected"
        )
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ImageReadError(label, f"OpenCV could not decode this {file_format} file")
    gray = _to_gray(decoded, label)
    if gray.dtype == np.uint8:
        bits, pixels = 8, gray.astype(np.float32) / 255.0
    elif gray.dtype == np.uint16:
        bits, pixels = 16, gray.astype(np.float32) / 65535.0
    else:
        raise ImageReadError(label, f"unsupported pixel type {gray.dtype}; use 8 or 16 bit")
    meta = ImageMeta(
        source=label,
        file_format="JPEG" if file_format == "MPO" else file_format,
        shape=(int(gray.shape[0]), int(gray.shape[1])),
        bits_stored=bits,
    )
    return XRayImage(pixels=pixels, meta=meta)


def _to_gray(decoded: np.ndarray, label: str) -> np.ndarray:
    if decoded.ndim == 2:
        return decoded
    if decoded.ndim != 3:
        raise ImageReadError(label, f"unexpected image array of shape {decoded.shape}")
    channels = decoded.shape[2]
    if channels == 1:
        return decoded[:, :, 0]
    if channels == 2:  # gray + alpha
        return decoded[:, :, 0]
    if channels in (3, 4):  # OpenCV order is BGR(A); alpha is ignored
        return cv2.cvtColor(np.ascontiguousarray(decoded[:, :, :3]), cv2.COLOR_BGR2GRAY)
    raise ImageReadError(label, f"unexpected number of channels ({channels})")
