"""Is this a frontal chest radiograph? Two checks, both from the lung-field model's one
pass over the image, calibrated on COVID-QU-Ex (docs/lungs.md has the measurements):

1. **Implausible lung fields**: the predicted lungs cover less or more of the image than
   on (nearly) every validation radiograph, or do not form one or two large parts.
2. **Unlike the training images**: the Mahalanobis distance of the encoder's deepest
   features (averaged over the image) from those of the Train images (mean and a
   Ledoit-Wolf covariance), above a threshold set on Val.

Written here because no maintained library does the two together on our features: the
statistics are NumPy, the covariance scikit-learn's ``LedoitWolf``.

The statistics live beside the lung model (``ood.safetensors``), so the check does not
depend on which classifier is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxrxai.errors import CheckpointError
from cxrxai.lungs import LungSegmenter

OOD_FILENAME = "ood.safetensors"
MIN_PART = 0.02  # a lung part is at least 2 % of the image; smaller blobs are noise


@dataclass(frozen=True)
class LungShape:
    area: float  # share of the image inside the predicted lungs
    parts: int  # connected parts of at least MIN_PART of the image


def lung_shape(mask: np.ndarray) -> LungShape:
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    areas = stats[1:, cv2.CC_STAT_AREA] / mask.size
    return LungShape(float(mask.mean()), int((areas >= MIN_PART).sum()))


@dataclass(frozen=True)
class OodStats:
    """What a chest radiograph looks like to the lung model (fitted on three quarters of
    Train, thresholds on the fourth; :mod:`cxrxai.training.ood_fit`); ``provenance``: how
    it was made and what it measured (strings), Val's false-alarm rate among them."""

    mean: np.ndarray  # (C,)
    precision: np.ndarray  # (C, C), the inverse of the shrunk covariance
    distance_threshold: float
    area_range: tuple[float, float]
    parts_range: tuple[int, int]
    provenance: dict[str, str] = field(default_factory=dict)

    def distances(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("bi,ij,bj->b", centred, self.precision, centred), 0))

    def save(self, folder: Path) -> Path:
        import torch
        from safetensors.torch import save_file

        metadata = {
            "distance_threshold": repr(self.distance_threshold),
            "area_min": repr(self.area_range[0]),
            "area_max": repr(self.area_range[1]),
            "parts_min": str(self.parts_range[0]),
            "parts_max": str(self.parts_range[1]),
        } | {f"provenance.{k}": v for k, v in self.provenance.items()}
        tensors = {
            "mean": torch.from_numpy(np.ascontiguousarray(self.mean, np.float64)),
            "precision": torch.from_numpy(np.ascontiguousarray(self.precision, np.float64)),
        }
        path = folder / OOD_FILENAME
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, folder: Path) -> OodStats:
        from safetensors import SafetensorError, safe_open

        path = folder / OOD_FILENAME
        if not path.is_file():
            raise CheckpointError(
                f"No out-of-distribution statistics at '{path}'; make them with "
                f"python -m cxrxai calibrate-ood --lung-model {folder}"
            )
        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = handle.metadata() or {}
                mean, precision = handle.get_tensor("mean"), handle.get_tensor("precision")
            stats = cls(
                mean,
                precision,
                float(meta["distance_threshold"]),
                (float(meta["area_min"]), float(meta["area_max"])),
                (int(meta["parts_min"]), int(meta["parts_max"])),
                {k.split(".", 1)[1]: v for k, v in meta.items() if k.startswith("provenance.")},
            )
        except (KeyError, ValueError, OSError, SafetensorError) as exc:
            raise CheckpointError(f"'{path}' is not a valid statistics file ({exc}).") from exc
        if mean.ndim != 1 or precision.shape != (len(mean), len(mean)):
            raise CheckpointError(
                f"'{path}': mean {mean.shape} and precision {precision.shape} do not fit."
            )
        return stats


@dataclass(frozen=True)
class OodReport:
    distance: float
    distance_threshold: float
    shape: LungShape
    reasons: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    def message(self) -> str:
        """The warning shown beside a prediction (empty when not flagged)."""
        if not self.reasons:
            return ""
        return (
            "This may not be a frontal chest radiograph: "
            + "; ".join(self.reasons)
            + ". The model was trained on chest X-rays only; its prediction and maps "
            "mean little here."
        )


def judge(stats: OodStats, distance: float, shape: LungShape) -> OodReport:
    reasons = []
    low, high = stats.area_range
    if not low <= shape.area <= high:
        reasons.append(
            f"the lung fields found cover {shape.area:.0%} of the image "
            f"(chest radiographs: {low:.0%}-{high:.0%})"
        )
    elif not stats.parts_range[0] <= shape.parts <= stats.parts_range[1]:
        reasons.append(f"the lung fields found form {shape.parts} large parts, not one or two")
    if distance > stats.distance_threshold:
        reasons.append(
            f"it looks unlike the training radiographs (distance {distance:.1f}, "
            f"threshold {stats.distance_threshold:.1f})"
        )
    return OodReport(distance, stats.distance_threshold, shape, tuple(reasons))


def assess(
    segmenter: LungSegmenter, stats: OodStats, images01: list[np.ndarray]
) -> list[OodReport]:
    """One report per image (one pass of the lung model for all of them)."""
    probabilities, features = segmenter.analyse(images01)
    distances = stats.distances(features)
    return [
        judge(stats, float(d), lung_shape(p >= segmenter.threshold))
        for d, p in zip(distances, probabilities, strict=True)
    ]
