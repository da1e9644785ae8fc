"""Multi-reader multi-case (MRMC) analysis of the raters' confidence that the explained
finding is present: without the explanations (the first read) and with them.

Truth per case: whether the explained label is the case's reference label (the dataset's
labels). One rule for missing reads, in the app and in the export alike: every read that
has a confidence is an observation of its modality (an aided read stays when its first read
has none), and the analysis is the U-statistic one of the FDA's iMRMC
(:mod:`cxrxai.study.ustat`), which weights readers by the pairs they read and, as iMRMC does,
leaves out a reader's reads in a modality that cover fewer than 3 normal or 3 diseased cases.
:func:`imrmc_text` writes iMRMC's input file of exactly those observations (less the readers
left out of both modalities: iMRMC would still count them in its Hillis df), and
:func:`reader_study` analyses them as iMRMC does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from cxrxai.study.names import clean_name
from cxrxai.study.ustat import MIN_CASES_PER_TRUTH, Inference, MRMCResult, analyse, too_few_cases

UNAIDED, AIDED = "without explanations", "with explanations"
# iMRMC's modality ids: no whitespace (iMRMC deletes it); sorted, the aided read comes
# first, so iMRMC's "A - B" is with - without explanations.
MODALITY_IDS = {AIDED: "with_explanations", UNAIDED: "without_explanations"}
TRUTH_READER = "-1"
IMRMC_FILE = "imrmc_input.imrmc"  # iMRMC's batch mode reads only files named *.imrmc
_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")


@dataclass(frozen=True)
class Observation:
    reader: str
    case: str
    truth: int  # 1: the explained finding is the case's reference label
    unaided: int | None  # confidence 0-100 in the first read
    aided: int | None  # confidence 0-100 with the explanations


def observations(rows: list[dict[str, Any]]) -> list[Observation]:
    """One per (reader, case) that has a confidence in either read, from the rating rows
    (one per panel; the confidences are the assignment's)."""
    seen: dict[tuple[str, str], Observation] = {}
    for row in rows:
        key = (str(row["rater"]), str(row["case_id"]))
        before, after = row.get("confidence_before"), row.get("confidence")
        if key in seen or (before is None and after is None):
            continue
        explained = row.get("explained_label") or row["target"]
        seen[key] = Observation(key[0], key[1], int(explained == row["target"]), before, after)
    return list(seen.values())


def safe_ids(names: list[str]) -> dict[str, str]:
    """Ids iMRMC reads as given: letters, digits and ``._/-`` only (it deletes whitespace
    and splits at commas), first a letter or digit (so never ``-1``, its truth reader), and
    distinct - a name that had to change, or whose cleaned form is taken, gets ``_k`` (so
    "Ann Lee" and "AnnLee" stay two readers)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for k, name in enumerate(names, start=1):
        # starting with a letter or digit: never -1, and no spreadsheet formula in the CSVs
        cleaned = _UNSAFE.sub("", clean_name(name)).lstrip("._/-") or "id"
        candidate = cleaned
        if cleaned != name or cleaned in taken or cleaned == TRUTH_READER:
            candidate = f"{cleaned}_{k}"
        while candidate in taken:
            candidate += f"_{k}"
        taken.add(candidate)
        out[name] = candidate
    return out


def header_text(text: str) -> str:
    """User text for iMRMC's free-text header: one line, no colon (its header tokens
    ``N0:``, ``N1:``, ``NR:``, ``NM:`` and ``BEGIN DATA:`` all end in one)."""
    return clean_name(text).replace(":", " -")


def _matrix(data: list[Observation]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scores (readers x cases x [with, without], NaN: no read), truth per case, readers."""
    readers = list(dict.fromkeys(o.reader for o in data))
    cases = list(dict.fromkeys(o.case for o in data))
    scores = np.full((len(readers), len(cases), 2), np.nan)
    truth = np.zeros(len(cases), dtype=bool)
    reader_index = {name: k for k, name in enumerate(readers)}
    case_index = {name: k for k, name in enumerate(cases)}
    for obs in data:
        r, c = reader_index[obs.reader], case_index[obs.case]
        truth[c] = bool(obs.truth)
        for m, score in enumerate((obs.aided, obs.unaided)):
            if score is not None:
                scores[r, c, m] = score
    return scores, truth, readers


def left_out_readers(data: list[Observation]) -> list[str]:
    """Readers whose reads count in neither modality (fewer than ``MIN_CASES_PER_TRUTH``
    normal or diseased cases in each): the analysis, like iMRMC, leaves them out."""
    scores, truth, readers = _matrix(data)
    too_few = too_few_cases(scores, truth) | np.isnan(scores).all(axis=1)
    return [name for name, out in zip(readers, too_few.all(axis=1), strict=True) if out]


def imrmc_text(rows: list[dict[str, Any]], study_name: str) -> str:
    """iMRMC's input file (name it ``.imrmc``): a free-text header, ``BEGIN DATA:``, then
    ``readerID,caseID,modalityID,score`` per read and one truth row per case (reader -1,
    modality ``truth``, score 0/1). Ids as :func:`safe_ids` makes them. Readers whose reads
    count in neither modality are named in the header and left out of the data: iMRMC drops
    their reads too but still counts them (AUC -1) in its Hillis degrees of freedom."""
    data = observations(rows)
    readers = safe_ids(list(dict.fromkeys(o.reader for o in data)))
    cases = safe_ids(list(dict.fromkeys(o.case for o in data)))
    left_out = set(left_out_readers(data))
    lines = [
        f"cxrxai reader study - {header_text(study_name)}",
        "Scores - confidence (0-100) that the explained finding is present.",
        f"Modalities - {MODALITY_IDS[AIDED]} (the read with the explanations) and "
        f"{MODALITY_IDS[UNAIDED]} (the first read); iMRMC's A - B is with - without.",
        "Truth - 1 when the explained label is the case's reference label.",
    ]
    if left_out:
        lines.append(
            f"Left out - {' '.join(sorted(readers[r] for r in left_out))} (fewer than "
            f"{MIN_CASES_PER_TRUTH} normal or {MIN_CASES_PER_TRUTH} diseased cases read in "
            "each modality)."
        )
    lines.append("BEGIN DATA:")
    truths: dict[str, int] = {}
    for obs in data:
        reader, case = readers[obs.reader], cases[obs.case]
        truths[case] = obs.truth
        if obs.reader in left_out:
            continue
        for modality, score in ((UNAIDED, obs.unaided), (AIDED, obs.aided)):
            if score is not None:
                lines.append(f"{reader},{case},{MODALITY_IDS[modality]},{score}")
    lines += [f"{TRUTH_READER},{case},truth,{truth}" for case, truth in sorted(truths.items())]
    return "\n".join(lines) + "\n"


def imrmc_ids(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Which id in the iMRMC file stands for which reader and case of the export."""
    data = observations(rows)
    out = []
    for kind, names in (("reader", [o.reader for o in data]), ("case", [o.case for o in data])):
        ids = safe_ids(list(dict.fromkeys(names)))
        out += [{"kind": kind, "imrmc_id": v, "export_id": k} for k, v in ids.items()]
    return out


def auc(truths: list[int], scores: list[float]) -> float:
    """The area under the ROC curve by ranks (Mann-Whitney; ties count half), what
    ``sklearn.metrics.roc_auc_score`` returns, fast enough for a bootstrap."""
    truth = np.asarray(truths, dtype=bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _inference(inference: Inference) -> dict[str, Any]:
    out = dataclasses.asdict(inference)
    out["se"] = inference.se
    return out


def reader_study(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference analysis of the confidences: iMRMC's U-statistic analysis of the
    reader-averaged AUC without and with explanations and of their difference (with -
    without), each with its variance, Normal / BDG / Hillis degrees of freedom, 95 % CIs and
    p-values (H0: AUC 0.5, difference 0). Where it cannot be computed (fewer than two
    readers, or no case of one truth), NaN with the reason in ``reason``."""
    scores, truth, readers = _matrix(observations(rows))
    out: dict[str, Any] = {
        "analysis": "U-statistic variance (Gallas; iMRMC 4.0.3), readers weighted by pairs",
        "n_readers": len(readers),
        "n_cases": len(truth),
        "n_normal": int((~truth).sum()),
        "n_disease": int(truth.sum()),
        "n_reads": int((~np.isnan(scores)).sum()),
        "auc_without": math.nan,
        "auc_with": math.nan,
        "difference": math.nan,
        "reason": None,
    }
    if len(readers) < 2 or truth.all() or not truth.any():
        out["reason"] = (
            f"needs two readers and cases with and without the explained finding; has "
            f"{len(readers)} reader(s), {out['n_disease']} case(s) with and "
            f"{out['n_normal']} without"
        )
        return out
    if np.isnan(scores).all(axis=(0, 1)).any():
        out["reason"] = "needs confidences in both reads (first read and with explanations)"
        return out
    try:
        result: MRMCResult = analyse(scores, truth, tuple(readers), (AIDED, UNAIDED))
    except ValueError as error:  # too few cases per reader for iMRMC's rule
        out["reason"] = str(error).replace("an MRMC analysis needs", "needs")
        return out
    out.update(
        left_out=[{"reader": r, "read": m} for r, m in result.excluded],
        auc_with=result.a.estimate,
        auc_without=result.b.estimate,
        difference=result.difference.estimate,
        fully_crossed=result.fully_crossed,
        with_explanations=_inference(result.a),
        without_explanations=_inference(result.b),
        change=_inference(result.difference),
        reader_aucs={
            name: {"with": a, "without": b} for name, (a, b) in result.reader_aucs.items()
        },
    )
    return out


def describe(analysis: dict[str, Any]) -> str:
    """The analysis in one paragraph, as the CLI and Study admin show it."""
    if analysis["reason"]:
        return f"Reader-averaged AUC of confidence: not computed ({analysis['reason']})."
    change = analysis["change"]
    aucs = (
        f"Reader-averaged AUC of confidence vs truth ({analysis['n_readers']} readers, "
        f"{analysis['n_normal']} + {analysis['n_disease']} cases, {analysis['n_reads']} reads): "
        f"without explanations {analysis['auc_without']:.4f}, with {analysis['auc_with']:.4f}, "
        f"difference {analysis['difference']:+.4f}"
    )
    if left_out := analysis.get("left_out"):
        aucs += (
            f"; {len(left_out)} reader-read(s) left out, as iMRMC does, for covering fewer "
            f"than {MIN_CASES_PER_TRUTH} normal or {MIN_CASES_PER_TRUTH} diseased cases"
        )
    if math.isnan(change["df_bdg"]):  # the variance is not positive
        return (
            f"{aucs}; its U-statistic variance is {change['variance']:.3g} (unbiased, so it "
            "can fall to 0 or below with few readers or cases): no CI or p-value."
        )
    low, high = change["ci_bdg"]
    hillis = (
        f"; Hillis df {change['df_hillis']:.2f}: [{change['ci_hillis'][0]:+.4f}, "
        f"{change['ci_hillis'][1]:+.4f}], p = {change['p_hillis']:.3g}"
        if analysis["fully_crossed"]
        else "; not fully crossed, so no Hillis df"
    )
    return (
        f"{aucs} (SE {change['se']:.4f}); 95 % CI with "
        f"BDG df {change['df_bdg']:.2f}: [{low:+.4f}, {high:+.4f}], p = {change['p_bdg']:.3g}"
        f"{hillis}; Normal: [{change['ci_normal'][0]:+.4f}, {change['ci_normal'][1]:+.4f}]. "
        f"U-statistic variance as the FDA's iMRMC computes it (its input file: {IMRMC_FILE})."
    )
