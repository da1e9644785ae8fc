"""How much two methods' maps of the same case agree with each other.

Researchers comparing methods ask not only which one finds the disease but whether they
point at the same place at all (SHAMSUL compared LIME, SHAP, Grad-CAM and LRP side by
side). Per pair of maps: Spearman rank correlation of the absolute values and SSIM, as the
sanity check measures a map against its randomised self (:func:`compare_maps`), and the
IoU of the two regions drawn from them at the current region setting.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from cxrxai.explain.sanity import compare_maps, downsized
from cxrxai.metrics.overlap import iou


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
