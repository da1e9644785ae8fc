"""Choosing a study's cases: what the model predicts on each, and a pick with a chosen
share of model errors (a study of trust must show the model being wrong too; Jin et al.'s
G4 asks whether trust separates right from wrong decisions)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from cxrxai.errors import CxrxaiError
from cxrxai.runner import ModelBundle
from cxrxai.study.service import CaseRef


def with_predictions(
    bundle: ModelBundle, refs: Sequence[CaseRef], pixels_of: Callable[[CaseRef], np.ndarray]
) -> list[CaseRef]:
    """The cases with the labels the model calls positive on each (``pixels_of`` reads a
    case's image)."""
    out = []
    for ref in refs:
        probabilities = bundle.predict_proba(pixels_of(ref))[0]
        positives = bundle.card.positives(probabilities)
        predicted = ";".join(bundle.labels[i] for i in positives)
        out.append(CaseRef(ref.case_id, ref.dataset, ref.split, ref.target, predicted))
    return out


def stratified(
    refs: Sequence[CaseRef], count: int, error_share: float, seed: int = 0
) -> list[CaseRef]:
    """``count`` cases, ``error_share`` of them (halves rounded up) cases the model got wrong, drawn
    at random with ``seed``, in their original order; a clear error when there are not
    enough of either kind."""
    if not 0.0 <= error_share <= 1.0:
        raise CxrxaiError(f"The share of model errors must be in [0, 1], got {error_share}.")
    known = [r for r in refs if r.model_correct is not None]
    wrong = [r for r in known if not r.model_correct]
    right = [r for r in known if r.model_correct]
    n_wrong = _errors(count, error_share)
    n_right = count - n_wrong
    if n_wrong > len(wrong) or n_right > len(right):
        raise CxrxaiError(
            f"{count} cases with {n_wrong} model errors need {n_wrong} wrong and {n_right} "
            f"right decisions; the candidates hold {len(wrong)} wrong and {len(right)} right."
        )
    rng = random.Random(seed)
    chosen = set(map(id, rng.sample(wrong, n_wrong) + rng.sample(right, n_right)))
    return [r for r in refs if id(r) in chosen]


def largest_pick(refs: Sequence[CaseRef], error_share: float, seed: int = 0) -> list[CaseRef]:
    """The most cases the candidates allow with ``error_share`` of model errors (cases of
    unknown correctness left out)."""
    known = [r for r in refs if r.model_correct is not None]
    for count in range(len(known), 0, -1):
        n_wrong = _errors(count, error_share)
        if n_wrong <= sum(not r.model_correct for r in known) and count - n_wrong <= sum(
            bool(r.model_correct) for r in known
        ):
            return stratified(refs, count, error_share, seed)
    return []


def _errors(count: int, error_share: float) -> int:
    """How many of ``count`` cases are errors at ``error_share``, halves rounded up (2.5 ->
    3, not Python's 2)."""
    return math.floor(count * error_share + 0.5)
