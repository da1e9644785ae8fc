"""Bootstrap CIs: NaN handling, seeding, coverage of a known mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrxai.metrics.bootstrap import bootstrap_mean


def test_nan_is_excluded_not_zero():
    est = bootstrap_mean([1.0, float("nan"), 3.0])
    assert est.mean == 2.0 and est.n == 2 and est.n_missing == 1
    assert 1.0 <= est.low <= est.mean <= est.high <= 3.0
    empty = bootstrap_mean([float("nan")])
    assert math.isnan(empty.mean) and empty.n == 0 and empty.n_missing == 1


def test_seeded_and_reproducible():
    values = np.random.default_rng(0).random(50)
    assert bootstrap_mean(values, seed=3) == bootstrap_mean(values, seed=3)
    assert bootstrap_mean(values, seed=3) != bootstrap_mean(values, seed=4)


def test_interval_width_matches_the_standard_error():
    values = np.random.default_rng(1).normal(10.0, 2.0, size=400)
    est = bootstrap_mean(values, resamples=2000)
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert est.high - est.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert est.low < 10.0 < est.high


def test_blocks_of_resamples_give_the_one_draw_interval_exactly():
    """Resamples are drawn in blocks (no gigabyte of indices for a whole split); the
    interval is the one a single (resamples x n) draw of the same seed gives, bit for bit."""
    values = np.random.default_rng(5).random(10_000)  # 3 blocks of 419 resamples
    estimate = bootstrap_mean(values, seed=7)
    rng = np.random.default_rng(7)
    means = values[rng.integers(0, values.size, size=(1000, values.size))].mean(axis=1)
    assert (estimate.low, estimate.high) == tuple(np.quantile(means, [0.025, 0.975]))
