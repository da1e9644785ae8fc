"""The metric registry: every metric has a direction and a home; the border-band and
lung shares (metrics added the registry's way: one function and a test each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cxrxai.metrics.registry import (
    BORDER_FRACTION,
    FAITHFULNESS_METRICS,
    METRICS,
    PIXEL_METRICS,
    MetricInputs,
    border_relevance,
    localisation_metrics,
    localisation_torch,
    shortcut,
)


def _border(maps: torch.Tensor) -> list[float]:
    empty = torch.zeros(maps.shape, dtype=torch.bool)
    return border_relevance(MetricInputs(maps, empty, empty)).tolist()


def test_border_relevance_on_hand_made_maps():
    maps = torch.zeros(5, 20, 20)
    maps[0, 0, 0] = 1.0  # all relevance in the corner
    maps[1, 10, 10] = 1.0  # all in the centre
    maps[2] = 1.0  # uniform: the band's share of the area
    maps[3] = -1.0  # no positive relevance: undefined
    maps[4, 0, 0], maps[4, 10, 10], maps[4, 5, 5] = 3.0, 1.0, -5.0  # negatives ignored
    corner, centre, uniform, negative, mixed = _border(maps)
    assert corner == 1.0 and centre == 0.0 and math.isnan(negative)
    assert uniform == pytest.approx(1 - (1 - 2 * BORDER_FRACTION) ** 2)  # 0.36
    assert mixed == pytest.approx(0.75)


def test_border_relevance_is_scored_with_every_pixel_metric_and_needs_no_truth():
    maps = torch.zeros(2, 20, 20)
    maps[:, 1, 1] = 1.0
    regions = maps > 0
    empty_truth = torch.zeros_like(regions)
    values = localisation_metrics(maps, regions, empty_truth)
    assert set(values) == set(PIXEL_METRICS)
    assert values["border_relevance"].tolist() == [1.0, 1.0]  # defined though truth is empty
    assert math.isnan(values["iou"][0].item())


def test_lung_share_on_a_hand_drawn_8x8_case():
    lungs = torch.zeros(8, 8, dtype=torch.bool)
    lungs[1:7, 1:3] = lungs[1:7, 5:7] = True  # two "lungs"
    maps = torch.zeros(4, 8, 8)
    maps[0, 2, 1], maps[0, 0, 4] = 3.0, 1.0  # 3 inside, 1 on the mediastinum's top
    maps[1, 0, 0] = 2.0  # all outside: a shortcut
    maps[2] = -1.0  # no positive relevance: undefined
    maps[3, 3, 5], maps[3, 3, 4] = 1.0, -9.0  # negatives ignored
    regions = maps > 0
    truth = torch.zeros_like(regions)
    for compute in (localisation_metrics, localisation_torch):
        share = compute(maps, regions, truth, lungs=lungs)["lung_relevance"].tolist()
        assert share[0] == pytest.approx(0.75) and share[1] == 0.0 and share[3] == 1.0
        assert math.isnan(share[2])
        unknown = compute(maps, regions, truth)["lung_relevance"]  # no lung fields
        assert torch.isnan(unknown).all()
    assert [shortcut(v) for v in (0.75, 0.0, None, float("nan"))] == [False, True, None, None]
    with pytest.raises(Exception, match="Lung fields of"):
        localisation_metrics(maps, regions, truth, lungs=torch.ones(4, 4, dtype=torch.bool))


def test_every_metric_has_a_direction_a_label_and_a_home():
    for metric in (*METRICS.values(), *FAITHFULNESS_METRICS.values()):
        assert metric.label and metric.direction in ("higher is better", "lower is better")
        assert (metric.compute is not None) == (metric.name in PIXEL_METRICS), metric.name
        assert metric.compute is not None or metric.computed_in.startswith("metrics.")


def test_shares_of_one_map_expanded_over_settings_equal_each_copy():
    """evaluate scores one map at nine region settings (the map expanded, not copied):
    the lung and border shares are summed once and equal those of real copies."""
    from cxrxai.metrics.registry import MetricInputs, border_relevance, lung_relevance

    rng = np.random.default_rng(2)
    one = torch.from_numpy(rng.standard_normal((1, 30, 40)).astype(np.float32))
    lungs = torch.from_numpy(rng.random((30, 40)) > 0.5)
    regions = torch.from_numpy(rng.random((9, 30, 40)) > 0.5)
    for maps, lung in ((one.expand(9, -1, -1), lungs.expand(9, -1, -1)),
                       (one.repeat(9, 1, 1), lungs.repeat(9, 1, 1))):  # fmt: skip
        inputs = MetricInputs(maps, regions, regions, "nan", (1.0, 1.0), lung)
        shares = (lung_relevance(inputs), border_relevance(inputs))
        assert all(s.shape == (9,) and s.dtype == torch.float32 for s in shares)
        if maps.stride(0) == 0:
            expanded = shares
    for got, expected in zip(expanded, shares, strict=True):
        torch.testing.assert_close(got, expected)
