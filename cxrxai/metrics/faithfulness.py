"""Faithfulness: does removing what the heatmap calls important change the prediction?

- :func:`pixel_importance`: the VinDr study's analysis. Replace the top p % pixels
  (p = 2, 5, 10, 20, 50) by the image mean or by a Gaussian blur of the image (kernel 11
  or 21), re-predict, report p_original - p_replaced.
- :func:`deletion_insertion`: deletion and insertion curves (Petsiuk et al. 2018) with
  their area under the curve; deletion removes the most important pixels first (a low
  AUC = faithful), insertion adds them to a blurred image (a high AUC = faithful).

Everything runs at the model's input resolution: the heatmap is resized to it, pixels are
ranked once (ties broken by position, so the order is reproducible), and every perturbed
image of a call goes through the model in batches (:func:`batched_probabilities`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from cxrxai.errors import CxrxaiError
from cxrxai.runner import ModelBundle, batched_probabilities, default_batch_size, input_image01

PERCENTS = (2, 5, 10, 20, 50)
REPLACEMENTS = ("mean", "blur11", "blur21")


def _blur(image01: torch.Tensor, kernel: int) -> torch.Tensor:
    # OpenCV's sigma for a kernel size (what cv2.GaussianBlur(ksize, 0) uses): deterministic,
    # unlike torchvision's GaussianBlur transform, which samples sigma.
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    return gaussian_blur(image01[None, None], [kernel, kernel], [sigma, sigma])[0, 0]


def replacement_image(image01: torch.Tensor, replacement: str) -> torch.Tensor:
    """What a removed pixel becomes: the image mean, or the blurred image."""
    if replacement == "mean":
        return torch.full_like(image01, float(image01.mean()))
    if replacement.startswith("blur") and replacement[4:].isdigit():
        return _blur(image01, int(replacement[4:]))
    raise CxrxaiError(f"Unknown replacement '{replacement}'; use one of {list(REPLACEMENTS)}")


def _inputs(
    bundle: ModelBundle, image: np.ndarray, heatmap: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, w) image in [0, 1] at the input size and the pixel order, most important first."""
    image01 = input_image01(bundle, bundle.preprocess(image))
    values = heatmap.detach().float().to(bundle.device)
    if values.shape != image01.shape:
        values = F.interpolate(values[None, None], size=image01.shape, mode="area")[0, 0]
    order = torch.argsort(values.flatten(), descending=True, stable=True)
    return image01, order


def _masks(order: torch.Tensor, counts: list[int], shape: torch.Size) -> torch.Tensor:
    """(len(counts), h, w) bool: the first ``count`` pixels of ``order`` for each count."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    limits = torch.tensor(counts, device=order.device).view(-1, 1)
    return (rank.view(1, -1) < limits).view(len(counts), *shape)


@dataclass
class PixelImportance:
    percent: float
    replacement: str
    p_original: float
    p_replaced: float

    @property
    def drop(self) -> float:
        """p_original - p_replaced (the VinDr study's y-axis)."""
        return self.p_original - self.p_replaced


def pixel_importance(
    bundle: ModelBundle,
    image: np.ndarray,
    heatmap: torch.Tensor,
    target: int,
    percents: tuple[float, ...] = PERCENTS,
    replacements: tuple[str, ...] = REPLACEMENTS,
    batch_size: int | None = None,
) -> list[PixelImportance]:
    """One row per (replacement, percent) for output ``target``."""
    image01, order = _inputs(bundle, image, heatmap)
    counts = [max(1, round(order.numel() * p / 100.0)) for p in percents]
    masks = _masks(order, counts, image01.shape)
    batch = [image01]
    for replacement in replacements:
        fill = replacement_image(image01, replacement)
        batch.extend(torch.where(masks, fill, image01))
    probs = batched_probabilities(
        bundle, torch.stack(batch), batch_size or default_batch_size(bundle)
    )[:, target].tolist()
    original = probs[0]
    rows, i = [], 1
    for replacement in replacements:
        for percent in percents:
            rows.append(PixelImportance(percent, replacement, original, probs[i]))
            i += 1
    return rows


@dataclass
class Curves:
    fractions: list[float]
    deletion: list[float]
    insertion: list[float]

    @property
    def deletion_auc(self) -> float:
        return float(np.trapezoid(self.deletion, self.fractions))

    @property
    def insertion_auc(self) -> float:
        return float(np.trapezoid(self.insertion, self.fractions))


def deletion_insertion(
    bundle: ModelBundle,
    image: np.ndarray,
    heatmap: torch.Tensor,
    target: int,
    steps: int = 20,
    baseline: str = "blur21",
    batch_size: int | None = None,
) -> Curves:
    """Probability of ``target`` as 0, 1/steps, ..., 100 % of the pixels are removed
    (replaced by ``baseline``) or inserted (into the baseline), most important first."""
    if steps < 1:
        raise CxrxaiError(f"steps must be at least 1, got {steps}")
    image01, order = _inputs(bundle, image, heatmap)
    fill = replacement_image(image01, baseline)
    fractions = [i / steps for i in range(steps + 1)]
    counts = [round(f * order.numel()) for f in fractions]
    masks = _masks(order, counts, image01.shape)
    deleted = torch.where(masks, fill, image01)
    inserted = torch.where(masks, image01, fill)
    probs = batched_probabilities(
        bundle, torch.cat([deleted, inserted]), batch_size or default_batch_size(bundle)
    )[:, target].tolist()
    return Curves(fractions, probs[: steps + 1], probs[steps + 1 :])
