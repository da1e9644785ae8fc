"""Distances: hand cases, mm spacing, and agreement with SciPy on random and real masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from cxrxai.metrics.distances import _distance_torch, distance_to, distances

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pixels(points: list[tuple[int, int]], shape: int = 16) -> torch.Tensor:
    mask = torch.zeros(shape, shape, dtype=torch.bool)
    for r, c in points:
        mask[r, c] = True
    return mask


@pytest.mark.parametrize("device", DEVICES)
def test_hand_computed(device):
    single = distances(pixels([(0, 0)]).to(device), pixels([(3, 4)]).to(device))
    assert {k: v.item() for k, v in single.items()} == pytest.approx(
        {"hausdorff": 5.0, "hd95": 5.0, "mean_distance": 5.0}
    )
    two = distances(pixels([(0, 0), (0, 10)]), pixels([(0, 0)]))
    assert two["hausdorff"].item() == pytest.approx(10.0)
    assert two["mean_distance"].item() == pytest.approx(5.0)  # directed pred -> truth
    assert two["hd95"].item() == pytest.approx(9.5)  # np.percentile([0, 10], 95)
    mm = distances(pixels([(0, 0)]), pixels([(3, 4)]), spacing=(0.5, 0.5))
    assert mm["hausdorff"].item() == pytest.approx(2.5)


def test_empty_masks_give_nan_never_zero():
    empty = torch.zeros(16, 16, dtype=torch.bool)
    for value in distances(empty, pixels([(1, 1)])).values():
        assert math.isnan(value.item())
    assert torch.isinf(distance_to(empty)).all()


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 0.7), (2.0, 0.5)])
def test_transform_matches_scipy(spacing):
    rng = np.random.default_rng(1)
    masks = rng.random((4, 40, 33)) > 0.97
    expected = np.stack([distance_transform_edt(~m, sampling=spacing) for m in masks])
    tensor = torch.from_numpy(masks)
    np.testing.assert_allclose(distance_to(tensor, spacing).numpy(), expected, atol=1e-4)
    # the GPU path (torch), run here on the CPU
    np.testing.assert_allclose(_distance_torch(tensor, spacing).numpy(), expected, atol=1e-4)


def _scipy_distances(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    pt = distance_transform_edt(~truth)[pred]
    tp = distance_transform_edt(~pred)[truth]
    return {
        "hausdorff": max(pt.max(), tp.max()),
        "hd95": max(np.percentile(pt, 95), np.percentile(tp, 95)),
        "mean_distance": pt.mean(),
    }


def test_real_masks_agree_with_scipy(covid_root):
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.metrics.regions import top_percent

    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:6]
    truth = np.stack([c.findings()[0].load_mask() for c in cases])
    lungs = np.stack([c.anatomy("lungs").load_mask() for c in cases])
    # a "prediction" with real anatomy: the top 10 % of the smoothed lung mask
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(lungs).float()[:, None], 9, 1, 4)
    pred = top_percent(smooth[:, 0] + torch.rand(smooth[:, 0].shape) * 1e-3, 10).numpy()
    got = distances(torch.from_numpy(pred), torch.from_numpy(truth))
    for i in range(len(cases)):
        expected = _scipy_distances(pred[i], truth[i])
        for name, value in expected.items():
            assert got[name][i].item() == pytest.approx(value, abs=1e-3), (name, i)
