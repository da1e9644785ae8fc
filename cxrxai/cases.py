"""A Case: one X-ray plus any number of annotations (boxes, masks, points).

Coordinates are always in pixels of the image file as it is on disk (x to the right,
y down); loaders rescale whatever their source used. Masks are loaded lazily so a split of
thousands of cases can be listed without reading every mask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from cxrxai.errors import ImageReadError
from cxrxai.imageio import read_image, read_mask

AnnotationKind = Literal["box", "mask", "point"]
AnnotationRole = Literal["finding", "anatomy"]


@functools.lru_cache(maxsize=256)
def _cached_mask(path: str, mtime_ns: int, size: int) -> np.ndarray:
    """Masks are read once per file version: a case's truth is asked for by every method,
    every region setting and every rerun of the Review page. Read-only, so no caller can
    change the cached copy."""
    mask = read_mask(path)
    mask.setflags(write=False)
    return mask


@dataclass
class Annotation:
    """One region drawn by someone.

    Args:
        kind: ``"box"`` (``box`` = x_min, y_min, x_max, y_max), ``"mask"`` (``mask_path`` or
            ``mask_loader``) or ``"point"`` (``point`` = x, y).
        label: the finding it marks (``"Cardiomegaly"``), or the anatomy (``"lungs"``).
        author: radiologist id when the source has one (VinDr ``rad_id``), else the source.
        role: ``"finding"`` for disease regions, ``"anatomy"`` for e.g. lung fields.
        predicted: drawn by a model (the lung-field model), not by a person.
    """

    kind: AnnotationKind
    label: str
    author: str | None = None
    role: AnnotationRole = "finding"
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None
    mask_path: Path | None = None
    mask_loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    predicted: bool = False

    def __post_init__(self) -> None:
        if self.kind == "box":
            if self.box is None:
                raise ValueError("a box annotation needs box=(x_min, y_min, x_max, y_max)")
            x0, y0, x1, y1 = self.box
            if not (x1 >= x0 and y1 >= y0):
                raise ValueError(f"box {self.box} has x_max < x_min or y_max < y_min")
        elif self.kind == "point" and self.point is None:
            raise ValueError("a point annotation needs point=(x, y)")
        elif self.kind == "mask" and self.mask_path is None and self.mask_loader is None:
            raise ValueError("a mask annotation needs mask_path or mask_loader")

    def load_mask(self) -> np.ndarray:
        """The mask as a bool HxW array (mask annotations only)."""
        if self.kind != "mask":
            raise ValueError(f"a {self.kind} annotation has no mask; use to_mask(shape)")
        if self.mask_loader is not None:
            return np.asarray(self.mask_loader(), dtype=bool)
        assert self.mask_path is not None
        stat = Path(self.mask_path).stat() if Path(self.mask_path).exists() else None
        if stat is None:
            return read_mask(self.mask_path)  # raises the clear "file not found" error
        return _cached_mask(str(self.mask_path), stat.st_mtime_ns, stat.st_size)

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Rasterise any kind to a bool mask of ``shape`` (H, W): boxes filled, points 1 px."""
        height, width = shape
        if self.kind == "mask":
            mask = self.load_mask()
            if mask.shape != (height, width):
                raise ValueError(
                    f"mask of '{self.label}' has shape {mask.shape}, image has {(height, width)}"
                )
            return mask
        out = np.zeros((height, width), dtype=bool)
        if self.kind == "box":
            assert self.box is not None
            x0, y0, x1, y1 = self.box
            c0, r0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            c1, r1 = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
            out[r0:r1, c0:c1] = True
        else:
            assert self.point is not None
            col, row = round(self.point[0]), round(self.point[1])
            if 0 <= row < height and 0 <= col < width:
                out[row, col] = True
        return out


def findings_of(annotations: Iterable[Annotation], label: str) -> list[Annotation]:
    """The findings (not anatomy) of ``label``: what a map for ``label`` is scored against."""
    return [a for a in annotations if a.role == "finding" and a.label == label]


@dataclass
class Case:
    """An image plus its annotations.

    Args:
        case_id: unique within a dataset (``"covid-qu-ex/Val/COVID-19/covid_1"``).
        image_path: the file on disk; may be missing (VinDr images are not shipped), which
            :meth:`load_image` reports clearly.
        labels: the case's class or findings; ``[]`` or ``["No finding"]`` for negatives.
        dataset, split: where it came from.
    """

    case_id: str
    image_path: Path
    labels: list[str] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    dataset: str = ""
    split: str = ""

    def findings(self) -> list[Annotation]:
        return [a for a in self.annotations if a.role == "finding"]

    def anatomy(self, label: str) -> Annotation | None:
        return next((a for a in self.annotations if a.role == "anatomy" and a.label == label), None)

    def authors(self) -> list[str]:
        return sorted({a.author for a in self.annotations if a.author})

    def load_image(self, **kwargs: object):  # -> XRayImage; import kept local (no cycle)
        """Read the image (see :func:`cxrxai.imageio.read_image` for ``kwargs``)."""
        if not Path(self.image_path).exists():
            raise ImageReadError(
                self.image_path,
                f"file not found (case '{self.case_id}' of dataset '{self.dataset}'). "
                "Check the data root (--data-root or $CXRXAI_DATA) and that this dataset's "
                "images are downloaded there.",
            )
        return read_image(self.image_path, **kwargs)  # type: ignore[arg-type]
