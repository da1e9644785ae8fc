"""Box IoU of predicted boxes (from :func:`~cxrxai.metrics.regions.region_boxes`) against
each radiologist's boxes.

Boxes are (x0, y0, x1, y1) in pixels, as ``Annotation.box`` and
:func:`~cxrxai.metrics.regions.region_boxes` give them; the IoU is ``torchvision.ops.box_iou``
(area = (x1 - x0) * (y1 - y0)).

Per radiologist, the score is the best match: the largest IoU between any predicted box
and any of that radiologist's boxes of the finding. Aggregated over radiologists as the
mean (the VinDr study averaged over its three readers) and the max. ``pairs_mean`` is the
mean over every (predicted, true) pair, the VinDr study's literal "IoU of each predicted
box against every radiologist's box, averaged".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import box_iou as _box_iou

Box = tuple[float, float, float, float]


def _tensor(boxes: Sequence[Box]) -> torch.Tensor:
    return torch.tensor([list(b) for b in boxes], dtype=torch.float32).view(-1, 4)


def box_iou(pred: Sequence[Box], truth: Sequence[Box]) -> torch.Tensor:
    """(P, T) IoU matrix of (x0, y0, x1, y1) boxes."""
    if not pred or not truth:
        return torch.zeros(len(pred), len(truth))
    return _box_iou(_tensor(pred), _tensor(truth))


def per_rater_iou(pred: Sequence[Box], truth_by_rater: dict[str, list[Box]]) -> dict[str, float]:
    """rater -> best IoU of any predicted box with any of that rater's boxes (0.0 when
    nothing was predicted, since the rater marked something and the heatmap missed it)."""
    return {
        rater: float(box_iou(pred, boxes).max()) if pred and boxes else 0.0
        for rater, boxes in truth_by_rater.items()
        if boxes
    }


def aggregate_box_iou(
    pred: Sequence[Box], truth_by_rater: dict[str, list[Box]]
) -> dict[str, float]:
    """``box_iou_mean`` / ``box_iou_max`` over raters and ``box_iou_pairs_mean``;
    NaN when no rater drew a box."""
    scores = per_rater_iou(pred, truth_by_rater)
    all_truth = [b for boxes in truth_by_rater.values() for b in boxes]
    if not scores:
        return {"box_iou_mean": math.nan, "box_iou_max": math.nan, "box_iou_pairs_mean": math.nan}
    pairs = box_iou(pred, all_truth)
    return {
        "box_iou_mean": sum(scores.values()) / len(scores),
        "box_iou_max": max(scores.values()),
        "box_iou_pairs_mean": float(pairs.mean()) if pairs.numel() else 0.0,
    }
