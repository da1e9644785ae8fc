"""Bootstrap confidence intervals over cases (CheXlocalize: 1,000 resamples of images)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class Estimate:
    """A nan-aware mean with its percentile bootstrap interval and the cases it used."""

    mean: float
    low: float
    high: float
    n: int  # cases with a value (NaN cases are left out, and counted in n_missing)
    n_missing: int


def bootstrap_mean(
    values: np.ndarray | list[float],
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean of the non-NaN values and a percentile bootstrap CI, resampling cases with
    replacement (seeded, so the interval is reproducible). NaN values are excluded, never
    counted as 0; with no values every field but the counts is NaN."""
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[~np.isnan(array)]
    missing = int(array.size - finite.size)
    if finite.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, missing)
    rng = np.random.default_rng(seed)
    # resamples drawn in blocks of about 4 million indices: the same random stream, row
    # for row, as one (resamples x n) draw, without its gigabyte of indices and values
    # for a whole split (n = 66,000: 1,000 x 66,000 x 16 bytes)
    block = max(1, _BLOCK_VALUES // finite.size)
    means = np.concatenate(
        [
            finite[
                rng.integers(0, finite.size, size=(min(block, resamples - start), finite.size))
            ].mean(axis=1)
            for start in range(0, resamples, block)
        ]
    )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Estimate(float(finite.mean()), float(low), float(high), int(finite.size), missing)
