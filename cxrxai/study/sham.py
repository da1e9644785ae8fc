"""Sham controls: blinded panels that are no explanation of the model's decision - the
same method's map of another class - shown among the real ones in the counterbalanced
order. Raters are never told; the exports say it (method ``sham:<method>``), and the
analysis compares trust in the real and the sham panels per method (Jin et al.: a
plausible-looking but unfaithful map should not earn the same trust)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from cxrxai.errors import CxrxaiError
from cxrxai.metrics.bootstrap import bootstrap_mean

SHAM_PREFIX = "sham:"


def split_sham(method: str) -> tuple[str, bool]:
    """``sham:gradcam`` -> ("gradcam", True); ``gradcam`` -> ("gradcam", False)."""
    if method.startswith(SHAM_PREFIX):
        return method[len(SHAM_PREFIX) :], True
    return method, False


def sham_target(labels: list[str], probabilities: Any, explained: str) -> int:
    """The class a sham map explains: the most probable label other than the explained
    one (a map of the wrong class, of the same method and image)."""
    if len(labels) < 2:
        raise CxrxaiError("A sham panel needs a model with two labels or more.")
    others = [i for i, label in enumerate(labels) if label != explained]
    return max(others, key=lambda i: float(probabilities[i]))


def sham_comparison(rows: list[dict[str, Any]], score: str = "trust", seed: int = 0) -> list[dict]:
    """Per method with a sham: mean ``score`` on its real and its sham panels (95 %
    bootstrap CIs over ratings) and the difference real - sham with its CI (a bootstrap of
    the two groups, resampled apart)."""
    groups: dict[str, dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    for row in rows:
        base, is_sham = split_sham(row["method"])
        if row.get(score) is not None:
            groups[base][is_sham].append(float(row[score]))
    rng = np.random.default_rng(seed)
    table = []
    for base, values in sorted(groups.items()):
        real, sham = np.array(values[False]), np.array(values[True])
        if not len(sham) or not len(real):
            continue
        differences = [
            rng.choice(real, len(real)).mean() - rng.choice(sham, len(sham)).mean()
            for _ in range(1000)
        ]
        estimate = {
            "real": bootstrap_mean(real, seed=seed),
            "sham": bootstrap_mean(sham, seed=seed),
        }
        table.append(
            {
                "method": base,
                f"{score} real": round(estimate["real"].mean, 2),
                f"{score} real CI": [
                    round(estimate["real"].low, 2),
                    round(estimate["real"].high, 2),
                ],
                f"{score} sham": round(estimate["sham"].mean, 2),
                f"{score} sham CI": [
                    round(estimate["sham"].low, 2),
                    round(estimate["sham"].high, 2),
                ],
                "difference": round(float(real.mean() - sham.mean()), 2),
                "difference CI": [
                    round(float(np.percentile(differences, 2.5)), 2),
                    round(float(np.percentile(differences, 97.5)), 2),
                ],
                "n real": len(real),
                "n sham": len(sham),
            }
        )
    return table
