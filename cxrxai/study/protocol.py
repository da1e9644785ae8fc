"""Assignment of cases and panel orders to raters: randomised and counterbalanced.

Panel order follows a Williams design (a balanced Latin square): with k methods, the k
rows put every method in every position once and, for even k, every method directly
after every other once. A rater's i-th case (in that rater's own shuffled case order)
gets row (offset_r + i) mod k, with offset_r = rater index mod k; so over any k
consecutive cases - and over raters - each method is shown equally often in each
position. Everything is drawn from ``numpy.random.default_rng((seed, rater_index))``:
the same study seed gives the same assignments.
"""

from __future__ import annotations

import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def williams_rows(k: int) -> list[list[int]]:
    """k orders of range(k) (2k for odd k, which needs the mirrored rows to balance
    carry-over)."""
    if k < 1:
        raise ValueError("at least one method is needed")
    first, low, high = [0], 1, k - 1
    while len(first) < k:
        first.append(low)
        low += 1
        if len(first) < k:
            first.append(high)
            high -= 1
    rows = [[(v + shift) % k for v in first] for shift in range(k)]
    if k % 2 == 1:
        rows += [list(reversed(r)) for r in rows]
    return rows


def rater_plan(
    n_cases: int, methods: list[str], seed: int, rater_index: int
) -> list[tuple[int, list[str]]]:
    """(case position in the study, methods in display order) for each of a rater's cases."""
    rng = np.random.default_rng((seed, rater_index))
    case_order = rng.permutation(n_cases).tolist()
    rows = williams_rows(len(methods))
    offset = rater_index % len(rows)
    return [  # each Williams row orders indices into the study's method list
        (case, [methods[j] for j in rows[(offset + i) % len(rows)]])
        for i, case in enumerate(case_order)
    ]


def shown_labels(methods_order: list[str], blinded: bool) -> list[str]:
    """What the rater sees for each panel: "A", "B", ... when blinded, else the names."""
    return list(LETTERS[: len(methods_order)]) if blinded else list(methods_order)
