"""Paired comparison of explanation methods on the same cases.

The LIME vs Grad-CAM study compared means of two methods' IoU without a test and lists
"comparison statistics for masks" among its open points. Two methods scored on the same
cases are paired samples: per class and per pair of methods, the mean of the per-case
differences with a paired bootstrap 95 % CI (resampling cases), the two-sided Wilcoxon
signed-rank test (scipy), and Holm's correction over the pairs compared within a class.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from cxrxai.errors import CxrxaiError
from cxrxai.metrics.bootstrap import Estimate, bootstrap_mean
from cxrxai.metrics.registry import METRICS

ALPHA = 0.05  # for the "better" verdict, on Holm-adjusted p-values


@dataclass(frozen=True)
class PairedComparison:
    """``first`` minus ``second`` on the cases both were scored on, for one class."""

    target: str
    metric: str
    first: str
    second: str
    difference: Estimate  # mean per-case difference, paired bootstrap 95 % CI
    p_value: float  # two-sided Wilcoxon signed-rank; NaN when every difference is 0
    p_holm: float  # Holm-adjusted over this class's pairs

    @property
    def better(self) -> str | None:
        """The method ahead on this metric's direction when both the CI excludes 0 and the
        Holm-adjusted p is below ALPHA, else None. Both: with a handful of cases the
        percentile bootstrap interval is too narrow to trust (two cases with positive
        differences give a CI above 0), while the rank test cannot reach significance."""
        low, high = self.difference.low, self.difference.high
        if self.difference.n == 0 or math.isnan(low) or low <= 0 <= high:
            return None
        if math.isnan(self.p_holm) or self.p_holm >= ALPHA:
            return None
        first_ahead = (low > 0) == METRICS[self.metric].higher_is_better
        return self.first if first_ahead else self.second


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment; NaN stays NaN and is not counted. Written here: SciPy
    ships only Benjamini-Hochberg, and statsmodels would be a dependency for five lines."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted


def paired_comparisons(
    rows: Iterable[dict[str, Any]], metric: str = "iou", seed: int = 0
) -> list[PairedComparison]:
    """Every pair of methods, per class, from result rows of ONE region setting (e.g.
    :func:`cxrxai.evaluation.browse.filtered_rows`). Cases pair by checkpoint, case and
    class; a case missing, or without a value (NaN/None), for either method is left out
    of that pair."""
    return paired_from_entries(
        (
            (r["mode"], r["value"], r["checkpoint_sha256"], r["case_id"], r["target"],
             r["method"], r[metric])
            for r in rows
        ),
        metric,
        seed,
    )  # fmt: skip


def paired_from_entries(
    entries: Iterable[tuple[Any, ...]], metric: str = "iou", seed: int = 0
) -> list[PairedComparison]:
    """:func:`paired_comparisons` from tuples (mode, value, checkpoint_sha256, case_id,
    target, method, the metric's value)."""
    _check_metric(metric)
    rows = list(entries)
    settings = {(mode, setting) for mode, setting, *_ in rows}
    if len(settings) > 1:
        raise CxrxaiError(f"Compare methods at one region setting, got {sorted(settings)}")
    cases = [(checkpoint, case_id) for _, _, checkpoint, case_id, *_ in rows]
    rank = {case: i for i, case in enumerate(sorted(set(cases)))}
    return paired_from_arrays(
        np.array([r[4] for r in rows], dtype=object),
        np.array([r[5] for r in rows], dtype=object),
        np.array([rank[c] for c in cases], dtype=np.int64),
        np.array([math.nan if r[6] is None else r[6] for r in rows], dtype=np.float64),
        metric,
        seed,
    )


def paired_from_arrays(
    targets: np.ndarray,
    methods: np.ndarray,
    cases: np.ndarray,
    values: np.ndarray,
    metric: str = "iou",
    seed: int = 0,
) -> list[PairedComparison]:
    """:func:`paired_comparisons` from columns of rows of one region setting: class and
    method (text), the case as an integer key whose order is the cases' order (equal keys,
    one case: checkpoint and case id), the metric's value (NaN: none). What the Cases page
    hands over from its arrays. Where a case appears twice for a class and method, its
    last row counts."""
    _check_metric(metric)
    valid = ~np.isnan(values)
    out = []
    for target in sorted(set(targets[valid].tolist())):
        of_target = valid & (targets == target)
        by_method = {}  # method -> (its cases in order, their values)
        for method in sorted(set(methods[of_target].tolist())):
            rows = np.flatnonzero(of_target & (methods == method))[::-1]  # last row first
            keys, first = np.unique(cases[rows], return_index=True)
            by_method[method] = (keys, values[rows[first]])
        pairs = []
        for first, second in itertools.combinations(by_method, 2):
            (keys_a, values_a), (keys_b, values_b) = by_method[first], by_method[second]
            _, in_a, in_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
            differences = values_a[in_a] - values_b[in_b]
            p_value = math.nan
            if differences.size and np.any(differences != 0):
                p_value = float(wilcoxon(differences).pvalue)
            estimate = bootstrap_mean(differences, seed=seed)
            pairs.append((first, second, estimate, p_value))
        adjusted = holm([p for *_, p in pairs])
        out += [
            PairedComparison(target, metric, first, second, estimate, p_value, p_holm)
            for (first, second, estimate, p_value), p_holm in zip(pairs, adjusted, strict=True)
        ]
    return out


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise CxrxaiError(f"Unknown metric '{metric}'; choose one of {list(METRICS)}")


def comparison_table(comparisons: list[PairedComparison], digits: int = 3) -> list[dict]:
    """Rows for a table (UI, report): one per class and pair of methods."""
    return [
        {
            "class": c.target,
            "methods": f"{c.first} - {c.second}",
            "n": c.difference.n,
            f"mean difference ({c.metric})": round(c.difference.mean, digits),
            "95 % CI": f"[{c.difference.low:.{digits}f}, {c.difference.high:.{digits}f}]",
            "Wilcoxon p": c.p_value,
            "Holm p": c.p_holm,
            "better": c.better or "no difference shown",
        }
        for c in comparisons
    ]
