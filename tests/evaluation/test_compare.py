"""Paired comparison of methods: pairing, the paired bootstrap, Wilcoxon and Holm by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.compare import comparison_table, holm, paired_comparisons
from cxrxai.metrics.bootstrap import bootstrap_mean


def row(method, case, iou, target="X", checkpoint="c", mode="top-percent", value=10.0):
    return {
        "method": method,
        "case_id": case,
        "target": target,
        "checkpoint_sha256": checkpoint,
        "mode": mode,
        "value": value,
        "iou": iou,
        "mean_distance": None if iou is None else 100.0 * (1.0 - iou),
    }


A_MINUS_B = [0.1, 0.2, 0.1, 0.3, 0.2, 0.15]


def rows():
    out = []
    for i, d in enumerate(A_MINUS_B):
        out += [row("a", f"k{i}", 0.2 + d), row("b", f"k{i}", 0.2)]
    out.append(row("a", "only-a", 0.9))  # no partner: left out
    out += [row("a", "no-b", 0.9), row("b", "no-b", None)]  # no value for b: left out
    out += [row("a", "k0", 0.0, checkpoint="other")]  # another checkpoint's case: unpaired
    return out


def test_pairs_cases_and_tests_the_differences():
    (iou,) = paired_comparisons(rows(), "iou")
    assert (iou.first, iou.second, iou.target) == ("a", "b", "X")
    assert iou.difference.n == len(A_MINUS_B)
    assert iou.difference.mean == pytest.approx(np.mean(A_MINUS_B))
    assert 0 < iou.difference.low <= iou.difference.mean <= iou.difference.high
    assert iou.p_value == pytest.approx(wilcoxon(A_MINUS_B).pvalue)
    assert iou.p_holm == iou.p_value  # one pair: nothing to adjust
    assert iou.better == "a"  # higher IoU, CI above 0
    (distance,) = paired_comparisons(rows(), "mean_distance")
    assert distance.difference.mean == pytest.approx(-100 * np.mean(A_MINUS_B))
    assert distance.better == "a"  # lower distance is better: a again


def test_no_difference_shown():
    same = [row(m, f"k{i}", 0.3) for i in range(5) for m in ("a", "b")]
    (c,) = paired_comparisons(same)
    assert c.difference.mean == 0 and math.isnan(c.p_value) and c.better is None
    mixed = [row("a", f"k{i}", 0.3 + d) for i, d in enumerate([0.1, -0.1, 0.05, -0.05])]
    mixed += [row("b", f"k{i}", 0.3) for i in range(4)]
    (c,) = paired_comparisons(mixed)
    assert c.difference.low < 0 < c.difference.high and c.better is None
    assert comparison_table([c])[0]["better"] == "no difference shown"


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])
    adjusted = holm([math.nan, 0.02])
    assert math.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.02)


def test_three_methods_two_classes_are_adjusted_per_class():
    data = []
    for target in ("X", "Y"):
        for i, d in enumerate(A_MINUS_B):
            data += [row("a", f"k{i}", 0.2 + d, target), row("b", f"k{i}", 0.2, target)]
            data += [row("c", f"k{i}", 0.2 + d / 2, target)]
    comparisons = paired_comparisons(data)
    assert [(c.target, c.first, c.second) for c in comparisons] == [
        (t, f, s) for t in ("X", "Y") for f, s in (("a", "b"), ("a", "c"), ("b", "c"))
    ]
    x = comparisons[:3]
    assert [c.p_holm for c in x] == pytest.approx(holm([c.p_value for c in x]))


def test_one_region_setting_at_a_time():
    mixed = [*rows(), row("a", "k0", 0.5, value=5.0)]
    with pytest.raises(CxrxaiError, match="one region setting"):
        paired_comparisons(mixed)
    with pytest.raises(CxrxaiError, match="Unknown metric"):
        paired_comparisons(rows(), "accuracy")


def test_two_cases_are_no_evidence_even_when_the_bootstrap_ci_excludes_zero():
    few = [row("a", "k0", 0.3), row("b", "k0", 0.2), row("a", "k1", 0.5), row("b", "k1", 0.3)]
    (c,) = paired_comparisons(few)
    assert c.difference.low > 0  # both differences positive: the percentile CI is [0.1, 0.2]
    assert c.p_value == pytest.approx(0.5) and c.better is None  # the rank test cannot say


def _dict_loop(rows, metric, seed=0):
    """The pairing as a loop over dicts (the algorithm before arrays): the reference."""
    values = {}
    for r in rows:
        if r[metric] is not None and not math.isnan(r[metric]):
            by_method = values.setdefault(r["target"], {}).setdefault(r["method"], {})
            by_method[(r["checkpoint_sha256"], r["case_id"])] = float(r[metric])  # last wins
    out = []
    for target, by_method in sorted(values.items()):
        pairs = []
        methods = sorted(by_method)
        for i, first in enumerate(methods):
            for second in methods[i + 1 :]:
                shared = sorted(by_method[first].keys() & by_method[second].keys())
                d = np.array([by_method[first][k] - by_method[second][k] for k in shared])
                p = float(wilcoxon(d).pvalue) if d.size and np.any(d != 0) else math.nan
                pairs.append((target, first, second, bootstrap_mean(d, seed=seed), p))
        adjusted = holm([p[-1] for p in pairs])
        out += [(*p, h) for p, h in zip(pairs, adjusted, strict=True)]
    return out


def test_arrays_pair_as_the_loop_over_dicts_does():
    """Cases keyed by (checkpoint, case id) in text order, NaN and None left out, a case
    seen twice counting its last row, methods missing from a class: the same pairs,
    intervals and p-values as the dict loop, bit for bit."""
    rng = np.random.default_rng(11)
    data = []
    for _ in range(3000):
        iou = float(rng.random())
        data.append(
            row(
                method=str(rng.choice(["gradcam", "lrp", "lime"])),
                case=f"case-{rng.integers(300)}",  # repeats: duplicates of a case
                iou=None if rng.random() < 0.05 else (math.nan if rng.random() < 0.05 else iou),
                target=str(rng.choice(["Edema", "Atelectasis", "Zeta"])),
                checkpoint=str(rng.choice(["b" * 64, "a" * 64])),
            )
        )
    data += [row("only", "case-1", 0.5, target="Alone")]  # one method: nothing to pair
    got = [
        (c.target, c.first, c.second, c.difference, c.p_value, c.p_holm)
        for c in paired_comparisons(data, "iou", seed=4)
    ]
    expected = _dict_loop(data, "iou", seed=4)
    assert len(got) == 9
    for g, e in zip(got, expected, strict=True):
        assert g[:4] == e[:4]
        assert g[4:] == pytest.approx(e[4:], abs=0, nan_ok=True)
