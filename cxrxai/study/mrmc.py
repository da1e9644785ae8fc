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


def _reader_aucs(data: list[Observation], modality: str) -> dict[str, float]:
    by_reader: dict[str, tuple[list[int], list[int]]] = {}
    for obs in data:
        score = getattr(obs, modality)
        if score is not None:
            truths, scores = by_reader.setdefault(obs.reader, ([], []))
            truths.append(obs.truth)
            scores.append(score)
    return {
        reader: auc(truths, scores)
        for reader, (truths, scores) in by_reader.items()
        if len(set(truths)) == 2
    }


def reader_averaged_auc(
    rows: list[dict[str, Any]], resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Reader-averaged AUC of the confidence without and with explanations, their
    difference, and a 95 % percentile bootstrap CI of the difference over readers and
    cases (readers and cases resampled together; resamples without both truths skipped).
    NaN where a reader has no case of either truth."""
    data = [o for o in observations(rows) if o.unaided is not None]
    readers = sorted({o.reader for o in data})
    cases = sorted({o.case for o in data})
    out: dict[str, Any] = {"n_readers": len(readers), "n_cases": len(cases)}
    unaided, aided = _reader_aucs(data, "unaided"), _reader_aucs(data, "aided")
    out["auc_without"] = float(np.mean(list(unaided.values()))) if unaided else float("nan")
    out["auc_with"] = float(np.mean(list(aided.values()))) if aided else float("nan")
    out["difference"] = out["auc_with"] - out["auc_without"]
    rng = np.random.default_rng(seed)
    index = {(o.reader, o.case): o for o in data}
    differences = []
    for _ in range(resamples if readers and cases else 0):
        chosen_readers = rng.choice(len(readers), len(readers))
        chosen_cases = rng.choice(len(cases), len(cases))
        sample = []
        for i, r in enumerate(chosen_readers):
            for j, c in enumerate(chosen_cases):
                obs = index.get((readers[r], cases[c]))
                if obs is not None:  # readers and cases relabelled: a repeat is another one
                    sample.append(
                        Observation(f"{obs.reader}#{i}", f"{obs.case}#{j}", obs.truth,
                                    obs.unaided, obs.aided)
                    )  # fmt: skip
        with_, without = _reader_aucs(sample, "aided"), _reader_aucs(sample, "unaided")
        common = sorted(set(with_) & set(without))
        if common:
            differences.append(np.mean([with_[r] - without[r] for r in common]))
    low, high = np.percentile(differences, [2.5, 97.5]) if differences else (float("nan"),) * 2
    out["difference_ci"] = (float(low), float(high))
    return out
