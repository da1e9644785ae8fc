"""Agreement between two methods' maps: hand-made maps and regions with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrxai.metrics.agreement import COMPARE_SIDE, map_agreement


def test_identical_opposite_and_unrelated_maps():
    rng = np.random.default_rng(0)
    smooth = np.outer(np.hanning(40), np.hanning(32)).astype(np.float32)
    noise = rng.random((40, 32)).astype(np.float32)
    rows = map_agreement({"a": smooth, "b": smooth.copy(), "c": noise})
    assert [r["methods"] for r in rows] == ["a / b", "a / c", "b / c"]
    same, unrelated = rows[0], rows[1]
    assert same["spearman"] == pytest.approx(1.0) and same["ssim"] == pytest.approx(1.0)
    assert abs(unrelated["spearman"]) < 0.2 and unrelated["ssim"] < 0.5
    # signed maps are ranked by magnitude: relevance against counts like relevance for
    (flipped,) = map_agreement({"a": smooth, "minus a": -smooth})
    assert flipped["spearman"] == pytest.approx(1.0)


def test_region_iou_by_hand():
    maps = {"a": np.zeros((8, 8), np.float32), "b": np.ones((8, 8), np.float32)}
    first = np.zeros((8, 8), bool)
    first[0:4, 0:2] = True  # 8 px
    second = np.zeros((8, 8), bool)
    second[2:6, 0:2] = True  # 8 px, 4 shared -> IoU 4 / 12
    (row,) = map_agreement(maps, {"a": first, "b": second})
    assert row["region IoU"] == pytest.approx(4 / 12)
    (empty,) = map_agreement(maps, {"a": np.zeros((8, 8), bool), "b": np.zeros((8, 8), bool)})
    assert math.isnan(empty["region IoU"])


def test_full_size_maps_are_compared_downsized():
    yy, xx = np.mgrid[0:1000, 0:800]
    a = np.exp(-((yy - 300) ** 2 + (xx - 300) ** 2) / 2e4).astype(np.float32)
    b = np.exp(-((yy - 700) ** 2 + (xx - 500) ** 2) / 2e4).astype(np.float32)
    (row,) = map_agreement({"a": a, "b": b})
    (small,) = map_agreement({"a": a[::4, ::4], "b": b[::4, ::4]})  # 250 x 200, as is
    assert max(a.shape) > COMPARE_SIDE
    assert row["spearman"] == pytest.approx(small["spearman"], abs=0.02)
    assert row["ssim"] == pytest.approx(small["ssim"], abs=0.05)
