"""Overlap metrics between predicted regions / heatmaps and ground-truth masks.

Pure torch over batches: ``pred`` and ``truth`` are bool (B, H, W) (or (H, W)) on any
device; every function returns a float32 (B,) tensor on that device.

Empty masks (:data:`EMPTY_MODES`), CheXlocalize's convention by default:

- ``"nan"`` (default, "true positive only"): region scores are NaN unless both the
  prediction and the truth are non-empty; hit rate and relevance scores are NaN when
  the truth is empty;
- ``"zero"``: a false positive (empty truth) or false negative (empty prediction) counts
  as 0; only a true negative (both empty) stays NaN.

NaN never turns into 0 silently: aggregates use nan-aware means and report counts.
"""

from __future__ import annotations

import torch

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import cpu_kernels

EMPTY_MODES = ("nan", "zero")


def _validate(pred: torch.Tensor, truth: torch.Tensor, empty: str) -> None:
    if empty not in EMPTY_MODES:
        raise CxrxaiError(f"Unknown empty-mask mode '{empty}'; use one of {list(EMPTY_MODES)}")
    if pred.shape[-2:] != truth.shape[-2:]:
        raise CxrxaiError(
            f"Prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in size; "
            "resize the heatmap to the mask's resolution first."
        )


def check_masks(pred: torch.Tensor, truth: torch.Tensor, empty: str) -> tuple[torch.Tensor, ...]:
    """Bool (B, H, W) prediction and truth on the prediction's device; clear errors for an
    unknown empty-mask mode or masks of different sizes."""
    _validate(pred, truth, empty)
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    return pred.bool(), truth.to(pred.device).bool()


def check_maps(
    maps: torch.Tensor, truth: torch.Tensor, empty: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) float maps and bool truth, checked like :func:`check_masks`."""
    _validate(maps, truth, empty)
    values = maps.float()
    truth = truth.to(maps.device).bool()
    if values.ndim == 2:
        values, truth = values[None], truth[None]
    return values, truth


def confusion(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(TP, |pred|, |truth|) per image, float32 (B,) - one pass shared by the scores."""
    tp = (pred & truth).flatten(1).sum(1, dtype=torch.int32).float()
    n_pred = pred.flatten(1).sum(1, dtype=torch.int32).float()
    n_truth = truth.flatten(1).sum(1, dtype=torch.int32).float()
    return tp, n_pred, n_truth


def _score(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    n_pred: torch.Tensor,
    n_truth: torch.Tensor,
    empty: str,
) -> torch.Tensor:
    """numerator / denominator with the empty-mask convention applied."""
    value = numerator / denominator.clamp(min=1)
    nan = torch.full_like(value, float("nan"))
    pred_any, truth_any = n_pred > 0, n_truth > 0
    if empty == "nan":
        return torch.where(pred_any & truth_any, value, nan)
    return torch.where(pred_any | truth_any, value, nan)


def region_scores(
    pred: torch.Tensor, truth: torch.Tensor, empty: str = "nan"
) -> dict[str, torch.Tensor]:
    """IoU, Dice, pixel precision and recall from one confusion count."""
    pred, truth = check_masks(pred, truth, empty)
    return scores_from_counts(*confusion(pred, truth), empty)


def scores_from_counts(
    tp: torch.Tensor, n_pred: torch.Tensor, n_truth: torch.Tensor, empty: str = "nan"
) -> dict[str, torch.Tensor]:
    """IoU, Dice, precision and recall from (TP, |pred|, |truth|) per image."""
    union = n_pred + n_truth - tp  # TP + FP + FN
    return {
        "iou": _score(tp, union, n_pred, n_truth, empty),
        "dice": _score(2 * tp, n_pred + n_truth, n_pred, n_truth, empty),
        "precision": _score(tp, n_pred, n_pred, n_truth, empty),
        "recall": _score(tp, n_truth, n_pred, n_truth, empty),
    }


def iou(pred: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """TP / (TP + FP + FN)."""
    return region_scores(pred, truth, empty)["iou"]


def dice(pred: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """2 TP / (2 TP + FP + FN) = 2 |Y n Y'| / (|Y| + |Y'|)."""
    return region_scores(pred, truth, empty)["dice"]


def precision(pred: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """Pixel precision TP / (TP + FP): the share of the predicted region that is true."""
    return region_scores(pred, truth, empty)["precision"]


def recall(pred: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """Pixel recall TP / (TP + FN): the share of the truth the region covers."""
    return region_scores(pred, truth, empty)["recall"]


def truth_score(value: torch.Tensor, truth_any: torch.Tensor, empty: str) -> torch.Tensor:
    """Scores defined by the truth alone: NaN (or 0 in "zero" mode) when it is empty."""
    fill = float("nan") if empty == "nan" else 0.0
    return torch.where(truth_any, value, torch.full_like(value, fill))


def hit(maps: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """Pointing game as CheXlocalize plays it: 1 if the map's maximum pixel lies inside
    the truth, else 0.

    One pixel decides: the first maximum in row-major order (``np.argmax``, CheXlocalize's
    ``eval_ptgame.py``). A constant map (a blank one, say) points nowhere and is a miss:
    every pixel ties for the maximum, so "any tied maximum inside" would call it a hit.
    """
    values, truth = check_maps(maps, truth, empty)
    flat = values.flatten(1)
    first_max = flat.argmax(dim=1, keepdim=True)
    inside = truth.flatten(1).gather(1, first_max).view(-1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    value = (inside & ~constant).float()
    return truth_score(value, truth.flatten(1).any(1), empty)


def relevance_mass(maps: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """Share of the positive relevance that falls inside the truth (Arras et al. 2022).

    NaN when the map has no positive relevance at all.
    """
    values, truth = check_maps(maps, truth, empty)
    positive = values.clamp(min=0).flatten(1)
    total = positive.sum(1)
    inside = (positive * truth.flatten(1)).sum(1)
    value = torch.where(total > 0, inside / total.clamp(min=1e-30), float("nan"))
    return truth_score(value, truth.flatten(1).any(1), empty)


def relevance_rank(maps: torch.Tensor, truth: torch.Tensor, empty: str = "nan") -> torch.Tensor:
    """Relevance rank accuracy (Arras et al. 2022): with K = |truth|, the share of the K
    most relevant pixels that lie inside the truth (pixels tied with the K-th value are
    all counted, and the share is of all of them)."""
    values, truth = check_maps(maps, truth, empty)
    flat = values.flatten(1)
    k = truth.flatten(1).sum(1)
    kth = _kth_largest(flat, k).view(-1, 1)
    top = flat >= kth
    inside = (top & truth.flatten(1)).sum(1).float()
    value = inside / top.sum(1).clamp(min=1).float()
    return truth_score(value, k > 0, empty)


def _kth_largest(flat: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row, the k-th largest value (k >= 1; rows with k = 0 get their maximum).

    A GPU sorts the whole batch at once; on the CPU a selection per row in numba
    (:func:`cxrxai.metrics.cpu_kernels.kth_largest`), linear time.
    """
    k = k.clamp(min=1)
    if flat.device.type != "cpu":
        ranked = flat.sort(dim=1, descending=True).values
        return ranked.gather(1, (k - 1).view(-1, 1)).view(-1)
    values = cpu_kernels.as_numpy(flat.float())
    return torch.from_numpy(cpu_kernels.run(cpu_kernels.kth_largest, values, k.numpy()))
