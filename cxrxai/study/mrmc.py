"""Multi-reader multi-case (MRMC) analysis of the raters' confidence that the explained
finding is present: without the explanations (the first read) and with them.

Truth per case: whether the explained label is the case's reference label (the dataset's
labels). :func:`imrmc_text` writes the input file of the FDA's iMRMC software (Gallas et
al.), whose U-statistics are the reference analysis; :func:`reader_averaged_auc` gives the
reader-averaged AUCs and their difference with a bootstrap over readers and cases, for a
first look in the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

UNAIDED, AIDED = "without explanations", "with explanations"


@dataclass(frozen=True)
class Observation:
    reader: str
    case: str
    truth: int  # 1: the explained finding is the case's reference label
    unaided: int | None  # confidence 0-100 in the first read
    aided: int | None  # confidence 0-100 with the explanations


def observations(rows: list[dict[str, Any]]) -> list[Observation]:
    """One per (reader, case) from the rating rows (one per panel; the confidence is the
    assignment's)."""
    seen: dict[tuple[str, str], Observation] = {}
    for row in rows:
        key = (str(row["rater"]), str(row["case_id"]))
        if key in seen or row.get("confidence") is None:
            continue
        explained = row.get("explained_label") or row["target"]
        seen[key] = Observation(
            key[0], key[1], int(explained == row["target"]),
            row.get("confidence_before"), row["confidence"],
        )  # fmt: skip
    return list(seen.values())


def imrmc_text(rows: list[dict[str, Any]], study_name: str) -> str:
    """iMRMC's input file: a free-text header, ``BEGIN DATA:``, then
    ``readerID,caseID,modalityID,score`` per observation and one truth row per case
    (reader -1, modality ``truth``, score 0/1)."""
    data = observations(rows)
    lines = [
        f"cxrxai reader study: {study_name}",
        "Scores: confidence (0-100) that the explained finding is present.",
        f"Modalities: '{UNAIDED}' (the first read) and '{AIDED}'.",
        "Truth: 1 when the explained label is the case's reference label.",
        "BEGIN DATA:",
    ]
    truths: dict[str, int] = {}
    for obs in data:
        truths[obs.case] = obs.truth
        if obs.unaided is not None:
            lines.append(f"{obs.reader},{obs.case},{UNAIDED},{obs.unaided}")
        lines.append(f"{obs.reader},{obs.case},{AIDED},{obs.aided}")
    lines += [f"-1,{case},truth,{truth}" for case, truth in sorted(truths.items())]
    return "\n".join(lines) + "\n"


def auc(truths: list[int], scores: list[float]) -> float:
    """The area under the ROC curve by ranks (Mann-Whitney; ties count half), what
    ``sklearn.metrics.roc_auc_score`` returns, fast enough for a bootstrap."""
    truth = np.asarray(truths, dtype=bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _reader_aucs(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per reader (row of ``scores``, readers x cases, NaN where a case was not read), the
    AUC over the cases it read: the share of (positive, negative) pairs ranked right, ties
    half - :func:`auc` for all readers at once. NaN without both truths."""
    positive, negative = scores[:, truth][:, :, None], scores[:, ~truth][:, None, :]
    valid = ~np.isnan(positive) & ~np.isnan(negative)
    wins = (positive > negative) + 0.5 * (positive == negative)
    pairs = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (wins * valid).sum(axis=(1, 2)) / pairs, np.nan)


def reader_averaged_auc(
    rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Reader-averaged AUC of the confidence without and with explanations, their
    difference, and a 95 % percentile bootstrap CI of the difference over readers and
    cases (readers and cases resampled together, a repeat counting again; readers without
    both truths in a resample left out of it). NaN where no reader has both truths."""
    data = [o for o in observations(rows) if o.unaided is not None]
    readers = sorted({o.reader for o in data})
    cases = sorted({o.case for o in data})
    out: dict[str, Any] = {"n_readers": len(readers), "n_cases": len(cases)}
    without = np.full((len(readers), len(cases)), np.nan)
    with_ = without.copy()
    truth = np.zeros(len(cases), dtype=bool)
    for obs in data:
        r, c = readers.index(obs.reader), cases.index(obs.case)
        without[r, c], with_[r, c], truth[c] = obs.unaided, obs.aided, bool(obs.truth)
    auc_without, auc_with = _reader_aucs(without, truth), _reader_aucs(with_, truth)
    with np.errstate(all="ignore"):
        out["auc_without"] = float(np.nanmean(auc_without)) if data else float("nan")
        out["auc_with"] = float(np.nanmean(auc_with)) if data else float("nan")
    out["difference"] = out["auc_with"] - out["auc_without"]
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples if data else 0):
        chosen_readers = rng.integers(len(readers), size=len(readers))
        chosen_cases = rng.integers(len(cases), size=len(cases))
        sample_truth = truth[chosen_cases]
        change = _reader_aucs(with_[np.ix_(chosen_readers, chosen_cases)], sample_truth)
        change -= _reader_aucs(without[np.ix_(chosen_readers, chosen_cases)], sample_truth)
        if not np.isnan(change).all():
            differences.append(float(np.nanmean(change)))
    low, high = np.percentile(differences, [2.5, 97.5]) if differences else (float("nan"),) * 2
    out["difference_ci"] = (float(low), float(high))
    return out
