"""Box IoU per radiologist and its aggregates (hand-computed)."""

from __future__ import annotations

import math

import pytest

from cxrxai.metrics.boxes import aggregate_box_iou, box_iou, per_rater_iou


def test_box_iou_hand_computed():
    # 10x10 boxes offset by 5: intersection 25, union 175
    assert box_iou([(0, 0, 10, 10)], [(5, 5, 15, 15)]).item() == pytest.approx(25 / 175)
    assert box_iou([], [(0, 0, 1, 1)]).shape == (0, 1)


def test_per_rater_best_match_and_aggregates():
    pred = [(0, 0, 10, 10), (50, 50, 60, 60)]
    truth = {"R1": [(5, 5, 15, 15)], "R2": [(0, 0, 10, 10)], "R3": []}
    scores = per_rater_iou(pred, truth)
    assert scores == pytest.approx({"R1": 25 / 175, "R2": 1.0})  # R3 drew nothing
    agg = aggregate_box_iou(pred, truth)
    assert agg["box_iou_mean"] == pytest.approx((25 / 175 + 1.0) / 2)
    assert agg["box_iou_max"] == pytest.approx(1.0)
    # all pairs: (25/175, 1.0) for the first box, (0, 0) for the far one
    assert agg["box_iou_pairs_mean"] == pytest.approx((25 / 175 + 1.0) / 4)


def test_nothing_predicted_scores_zero_and_no_truth_is_nan():
    assert per_rater_iou([], {"R1": [(0, 0, 5, 5)]}) == {"R1": 0.0}
    assert math.isnan(aggregate_box_iou([(0, 0, 5, 5)], {})["box_iou_mean"])
