"""DICOM X-rays through pydicom: Modality LUT, VOI LUT or window, MONOCHROME1, BitsStored.

Compressed transfer syntaxes (JPEG baseline, JPEG 2000, JPEG-LS) are decoded by pydicom's
pylibjpeg plugins. Only non-identifying attributes are copied into the metadata.
"""

from __future__ import annotations

import io
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cxrxai.environment import max_image_side
from cxrxai.errors import ImageReadError
from cxrxai.xray import ImageMeta, XRayImage, check_size, linear_window, max_file_bytes


def read_dicom_bytes(
    data: bytes,
    label: str,
    window: tuple[float, float] | None = None,
    max_side: int | None = None,
) -> XRayImage:
    """Decode one single-frame grayscale DICOM image to [0, 1] (white = dense).

    ``max_side``: the largest Rows / Columns accepted (default
    :func:`cxrxai.environment.max_image_side`), checked from the header before the pixel
    data is decoded; a deflated file is inflated only up to what such an image needs.
    """
    limit = max_side or max_image_side()
    check_deflated_size(data, label, max_file_bytes(limit))
    ds = _parse(data, label)
    if "PixelData" not in ds:
        raise ImageReadError(label, "the DICOM file has no pixel data (is it a report or SR?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(
            label,
            f"the DICOM file is a multi-frame volume ({frames} frames); "
            "a single 2-D radiograph is expected",
        )
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if samples != 1 or not photometric.startswith("MONOCHROME"):
        raise ImageReadError(
            label,
            f"the DICOM image is {photometric} with {samples} samples per pixel; "
            "X-rays are expected as MONOCHROME1 or MONOCHROME2",
        )
    check_size(label, _header_int(ds, "Columns"), _header_int(ds, "Rows"), limit, "DICOM header")
    bits = _header_int(ds, "BitsAllocated", 16)
    if bits not in (1, 8, 16, 32):
        raise ImageReadError(label, f"BitsAllocated is {bits}; X-rays have 8, 16 or 32")
    stored = _decode(ds, label)
    if stored.ndim != 2:
        raise ImageReadError(label, f"the pixel data has shape {stored.shape}; expected 2-D")
    modality = apply_modality_lut(stored, ds).astype(np.float32)
    pixels, used_window = _apply_voi(stored, modality, ds, window)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    meta = ImageMeta(
        source=label,
        file_format="DICOM",
        shape=(int(stored.shape[0]), int(stored.shape[1])),
        bits_stored=int(ds.get("BitsStored", stored.dtype.itemsize * 8)),
        photometric_interpretation=photometric,
        pixel_spacing_mm=_pixel_spacing(ds),
        view_position=str(ds.get("ViewPosition", "")) or None,
        modality=str(ds.get("Modality", "")) or None,
        transfer_syntax=_transfer_syntax_name(ds),
        window=used_window,
        window_presets=_window_presets(ds),
    )
    return XRayImage(pixels=pixels.astype(np.float32), meta=meta, modality_values=modality)


def _header_int(ds: pydicom.Dataset, keyword: str, default: int = 0) -> int:
    try:
        return int(ds.get(keyword, default))
    except (TypeError, ValueError):
        return default


# PS3.10 7.1: the file meta group begins with its length, (0002,0000) UL, right after
# the 128-byte preamble and "DICM"; a deflated data set follows the group.
_GROUP_LENGTH_TAG = b"\x02\x00\x00\x00UL\x04\x00"


def check_deflated_size(data: bytes, label: str, max_bytes: int) -> None:
    """A Deflated Explicit VR Little Endian file is inflated whole by pydicom before its
    header can be read (a 382 KB file held a 14,000 x 14,000 image: 3.4 GB); inflate it
    here first, at most ``max_bytes``, and refuse one that holds more. Written here
    because pydicom's reader offers no bound on the inflated size."""
    if data[128:132] != b"DICM" or data[132:140] != _GROUP_LENGTH_TAG:
        return
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    if DeflatedExplicitVRLittleEndian.encode() not in data[144:meta_end]:
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflater.decompress(data[meta_end:], max_bytes)
    except zlib.error as exc:
        raise ImageReadError(label, f"its deflated data set is damaged ({exc})") from exc
    if inflater.unconsumed_tail:
        raise ImageReadError(
            label,
            f"its deflated data set inflates to more than {max_bytes / 2**20:.0f} MB, more "
            "than the largest accepted image needs",
        )


def _parse(data: bytes, label: str) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), force=not data[128:132] == b"DICM")
    except InvalidDicomError as exc:
        raise ImageReadError(label, f"not a valid DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged headers
        raise ImageReadError(
            label, f"the DICOM header is damaged ({type(exc).__name__}: {exc})"
        ) from exc


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """pydicom logs each failed decoder attempt with a traceback; we raise one clear
    error instead, so its log is silenced for the duration of the decode."""
    logger = logging.getLogger("pydicom")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _decode(ds: pydicom.Dataset, label: str) -> np.ndarray:
    syntax = _transfer_syntax_name(ds)
    try:
        with _quiet_pydicom():
            return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc)
        if (
            "plugin" in text.lower()
            or "decod" in text.lower()
            or isinstance(exc, NotImplementedError)
        ):
            raise ImageReadError(
                label,
                f"its transfer syntax '{syntax}' cannot be decoded here ({text.splitlines()[0]}). "
                "Supported: uncompressed, RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000 "
                "(pip install -r requirements.txt installs the pylibjpeg decoders).",
            ) from exc
        raise ImageReadError(label, f"its pixel data could not be decoded ({text})") from exc
    except (ValueError, AttributeError, KeyError, EOFError, OSError) as exc:
        raise ImageReadError(
            label, f"its pixel data is damaged or truncated ({type(exc).__name__}: {exc})"
        ) from exc


def _apply_voi(
    stored: np.ndarray,
    modality: np.ndarray,
    ds: pydicom.Dataset,
    window: tuple[float, float] | None,
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """[0, 1] values: the caller's window, else the file's VOI LUT, else its first window,
    else the full range of the data."""
    if window is not None:
        return linear_window(modality, *window), (float(window[0]), float(window[1]))
    if "VOILUTSequence" in ds:
        # pydicom applies the LUT to stored values and returns LUT output units.
        lut = ds.VOILUTSequence[0]
        out_bits = int(lut.LUTDescriptor[2])
        values = apply_voi_lut(stored, ds, prefer_lut=True).astype(np.float32)
        return np.clip(values / float(2**out_bits - 1), 0.0, 1.0), None
    presets = _window_presets(ds)
    if presets:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        center, width = presets[0]
        if function == "SIGMOID":
            return (1.0 / (1.0 + np.exp(-4.0 * (modality - center) / width))).astype(
                np.float32
            ), presets[0]
        return linear_window(modality, center, width), presets[0]
    low, high = float(modality.min()), float(modality.max())
    return (modality - low) / max(high - low, 1e-6), None


def _window_presets(ds: pydicom.Dataset) -> tuple[tuple[float, float], ...]:
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None:
        return ()
    as_list = lambda v: list(v) if isinstance(v, pydicom.multival.MultiValue) else [v]  # noqa: E731
    return tuple(
        (float(c), float(w))
        for c, w in zip(as_list(centers), as_list(widths), strict=False)
        if float(w) >= 1
    )


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    # PixelSpacing (patient plane) is preferred; CR/DX often only have ImagerPixelSpacing.
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            row, col = float(value[0]), float(value[1])
            if row > 0 and col > 0:
                return (row, col)
    return None


def _transfer_syntax_name(ds: pydicom.Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    return f"{uid.name} ({uid})" if uid is not None else None
