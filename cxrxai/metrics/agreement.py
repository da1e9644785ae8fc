"""How much two methods' maps of the same case agree with each other.

Researchers comparing methods ask not only which one finds the disease but whether they
point at the same place at all (SHAMSUL compared LIME, SHAP, Grad-CAM and LRP side by
side). Per pair of maps: Spearman rank correlation of the absolute values and SSIM, as the
sanity check measures a map against its randomised self (:func:`compare_maps`), and the
IoU of the two regions drawn from them at the current region setting. The sanity check
(:mod:`cxrxai.evaluation.sanity`) compares a map with its randomised self the same way.
"""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from cxrxai.metrics.overlap import iou


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / ((high - low) or 1.0)


# Maps come from the model's input size (224-512 px) upsampled to the image; ranking 3.6 M
# pixels of a full radiograph takes seconds per comparison (the sanity check makes one per
# method and cascade step, the Review page one per pair on every slider move), and the
# upsampled detail carries no information the input-size map did not.
COMPARE_SIDE = 256


def downsized(values: np.ndarray, side: int = COMPARE_SIDE) -> np.ndarray:
    """The map at most ``side`` px a side (area-averaged), float32."""
    height, width = values.shape
    scale = side / max(height, width)
    if scale >= 1.0:
        return values.astype(np.float32)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def compare_maps(original: np.ndarray, randomised: np.ndarray) -> tuple[float, float]:
    """Spearman of |values| and SSIM of two maps of one image, at most COMPARE_SIDE px."""
    original, randomised = downsized(original), downsized(randomised)
    a, b = np.abs(original).ravel(), np.abs(randomised).ravel()
    # A constant map carries no ranking at all: count it as uncorrelated.
    rho = 0.0 if a.min() == a.max() or b.min() == b.max() else spearmanr(a, b).statistic
    ssim = structural_similarity(_normalised(original), _normalised(randomised), data_range=1.0)
    return float(np.nan_to_num(rho)), float(ssim)


def map_agreement(
    maps: dict[str, np.ndarray], regions: dict[str, np.ndarray] | None = None
) -> list[dict[str, Any]]:
    """One row per pair of methods: Spearman (|values|) and SSIM of the maps (at most
    COMPARE_SIDE px a side) and, with ``regions``, the IoU of the two regions (full
    resolution; NaN when both are empty)."""
    small = {name: downsized(values) for name, values in maps.items()}
    rows = []
    for first, second in itertools.combinations(maps, 2):
        rho, ssim = compare_maps(small[first], small[second])
        row: dict[str, Any] = {"methods": f"{first} / {second}", "spearman": rho, "ssim": ssim}
        if regions is not None:
            a = torch.from_numpy(np.asarray(regions[first], dtype=bool))[None]
            b = torch.from_numpy(np.asarray(regions[second], dtype=bool))[None]
            row["region IoU"] = float(iou(a, b)[0])
        rows.append(row)
    return rows
