"""An X-ray as the project holds it: float32 pixels in [0, 1] and metadata without
identifiers, and the checks every reader applies (PNG/JPEG in :mod:`cxrxai.imageio`,
DICOM in :mod:`cxrxai.dicom`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cxrxai.environment import MAX_SIDE_ENV_VAR
from cxrxai.errors import ImageReadError


@dataclass(frozen=True)
class ImageMeta:
    """What the viewer and the metrics need to know about the pixels; no identifiers."""

    source: str
    file_format: str
    shape: tuple[int, int]
    bits_stored: int
    photometric_interpretation: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    view_position: str | None = None
    modality: str | None = None
    transfer_syntax: str | None = None
    window: tuple[float, float] | None = None
    window_presets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class XRayImage:
    """A 2-D X-ray: ``pixels`` float32 HxW in [0, 1], 0 = black (air dark), 1 = white.

    For DICOM, ``modality_values`` keeps the pixels after the Modality LUT so the display
    window can change without re-reading the file (:meth:`with_window`).
    """

    pixels: np.ndarray
    meta: ImageMeta
    modality_values: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.meta.shape

    def with_window(self, center: float, width: float) -> XRayImage:
        """The same DICOM image displayed with another window (center, width)."""
        if self.modality_values is None:
            raise ValueError(f"'{self.meta.source}' is not DICOM; it has no window to change")
        pixels = linear_window(self.modality_values, center, width)
        if self.meta.photometric_interpretation == "MONOCHROME1":
            pixels = 1.0 - pixels
        return replace(self, pixels=pixels, meta=replace(self.meta, window=(center, width)))


def max_file_bytes(max_side: int) -> int:
    """The largest image file read: an uncompressed 16-bit image of the largest accepted
    size (what a DICOM of that size holds), plus room for its header."""
    return 2 * max_side * max_side + (16 << 20)


def check_size(label: str, width: int, height: int, max_side: int, what: str = "") -> None:
    """Refuse a declared image size over the limit, naming both."""
    if width > max_side or height > max_side or width < 1 or height < 1:
        raise ImageReadError(
            label,
            f"the {what or 'image'} declares {width} x {height} pixels; the largest accepted "
            f"is {max_side} x {max_side} (every chest detector fits; set "
            f"${MAX_SIDE_ENV_VAR} to change it)",
        )


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window mapped to [0, 1] (float32).

    Written out because pydicom's ``apply_windowing`` reads the window from the dataset
    and maps to the stored bit range, while the viewer needs an arbitrary window -> [0, 1].
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    scaled = (values.astype(np.float32) - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)
