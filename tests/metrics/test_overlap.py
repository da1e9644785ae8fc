"""Overlap scores: hand-computed 8x8 cases, empty-mask conventions, batches, devices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import overlap
from cxrxai.metrics.registry import localisation_metrics, localisation_torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def square(top: int, left: int, size: int = 4, shape: int = 8) -> torch.Tensor:
    mask = torch.zeros(shape, shape, dtype=torch.bool)
    mask[top : top + size, left : left + size] = True
    return mask


@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed_overlap(device):
    # 4x4 squares offset by 2: intersection 2x2 = 4 px, union 16 + 16 - 4 = 28 px.
    pred, truth = square(0, 0).to(device), square(2, 2).to(device)
    scores = overlap.region_scores(pred, truth)
    assert scores["iou"].device.type == device
    assert scores["iou"].item() == pytest.approx(4 / 28)
    assert scores["dice"].item() == pytest.approx(8 / 32)
    assert scores["precision"].item() == pytest.approx(4 / 16)
    assert scores["recall"].item() == pytest.approx(4 / 16)
    assert overlap.iou(truth, truth).item() == 1.0


def test_batch_matches_single_pairs():
    preds = torch.stack([square(0, 0), square(1, 1), square(4, 4)])
    truths = torch.stack([square(2, 2), square(2, 2), square(0, 0)])
    batch = overlap.iou(preds, truths)
    singles = [overlap.iou(p, t).item() for p, t in zip(preds, truths, strict=True)]
    assert batch.tolist() == pytest.approx(singles)
    assert batch[2].item() == 0.0  # disjoint, both non-empty: a real 0, not NaN


def test_empty_masks_default_true_positive_only():
    empty = torch.zeros(8, 8, dtype=torch.bool)
    some = square(0, 0)
    for name in ("iou", "dice", "precision", "recall"):
        fn = getattr(overlap, name)
        assert math.isnan(fn(some, empty).item()), name  # false positive
        assert math.isnan(fn(empty, some).item()), name  # false negative
        assert math.isnan(fn(empty, empty).item()), name  # true negative
        assert fn(some, empty, empty="zero").item() == 0.0, name
        assert fn(empty, some, empty="zero").item() == 0.0, name
        assert math.isnan(fn(empty, empty, empty="zero").item()), name
    with pytest.raises(CxrxaiError, match="empty-mask mode 'skip'"):
        overlap.iou(some, some, empty="skip")


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(CxrxaiError, match="differ in size"):
        overlap.iou(square(0, 0), torch.zeros(16, 16, dtype=torch.bool))


def test_hit_pointing_game_and_ties():
    truth = square(2, 2)
    heat = torch.zeros(8, 8)
    heat[0, 0] = 1.0
    assert overlap.hit(heat, truth).item() == 0.0
    empty = torch.zeros(8, 8, dtype=torch.bool)
    assert math.isnan(overlap.hit(heat, empty).item())
    assert overlap.hit(heat, empty, empty="zero").item() == 0.0
    heat[3, 3] = 1.0  # tied maximum: the first in row-major order decides (np.argmax)
    assert overlap.hit(heat, truth).item() == 0.0
    heat[0, 0] = 0.5
    assert overlap.hit(heat, truth).item() == 1.0


@pytest.mark.parametrize("fill", [0.0, 0.37, -2.0])
def test_constant_map_is_a_miss(fill):
    """A blank map points nowhere: a miss, on the torch path and the CPU kernel, also when
    the truth covers the pixel np.argmax would name (CheXlocalize's eval_ptgame)."""
    heat = torch.full((8, 8), fill)
    truth = torch.zeros(8, 8, dtype=torch.bool)
    truth[0:3, 0:3] = True  # holds pixel (0, 0), np.argmax of a constant map
    assert overlap.hit(heat, truth).item() == 0.0
    region = truth.clone()
    for metrics in (localisation_metrics, localisation_torch):
        assert metrics(heat[None], region[None], truth[None])["hit"].item() == 0.0


def test_relevance_mass_and_rank():
    truth = square(0, 0, size=2)  # 4 pixels
    heat = torch.zeros(8, 8)
    heat[0, 0] = heat[0, 1] = heat[1, 0] = 1.0  # 3 inside
    heat[5, 5] = 4.0  # 1 outside, the largest
    heat[7, 7] = -10.0  # negative relevance is not mass
    assert overlap.relevance_mass(heat, truth).item() == pytest.approx(3 / 7)
    # top-4 pixels: 4.0 and the three 1.0 -> 3 of 4 inside
    assert overlap.relevance_rank(heat, truth).item() == pytest.approx(3 / 4)
    assert math.isnan(overlap.relevance_mass(torch.zeros(8, 8), truth).item())


def test_rank_against_numpy_on_random_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 16, 16)).astype(np.float32)
    truths = rng.random((5, 16, 16)) > 0.7
    got = overlap.relevance_rank(torch.from_numpy(maps), torch.from_numpy(truths))
    for m, t, g in zip(maps, truths, got, strict=True):
        k = int(t.sum())
        top = np.argsort(-m.ravel())[:k]
        assert g.item() == pytest.approx(t.ravel()[top].mean())
