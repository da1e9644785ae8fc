"""The study's analysis: ratings per method and class with bootstrap CIs, inter-rater
agreement (Krippendorff's alpha for ordinal data via the ``krippendorff`` package, and
ICC(2,1)), trust against localisation metrics, and exports."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils
from scipy.stats import spearmanr

from cxrxai.csvout import write_csv
from cxrxai.metrics.bootstrap import bootstrap_mean
from cxrxai.study.mrmc import IMRMC_FILE, auc, imrmc_ids, imrmc_text, reader_study
from cxrxai.study.service import SCORES, progress
from cxrxai.study.sham import sham_comparison

EXPORT_COLUMNS = (
    "rater",
    "role",
    "years_experience",
    "ai_experience",
    "case_id",
    "target",
    "explained_label",
    "method",
    "shown_as",
    "trust",
    "localisation",
    "usefulness",
    "agrees_with_model",
    "model_correct",
    "agrees_before_explanations",
    "image_read_label",  # staged reveal: the rater's own label from the image alone
    "image_read_confidence",
    "confidence_before",
    "confidence",
    "comment",
    "seconds_on_case",
    "wait_seconds",  # waiting for the maps: recorded apart, never in the analysis
    "first_read_seconds",
    "display",
    "started_at",
    "submitted_at",
    "app_version",
    "checkpoint_sha256",
    "method_settings",  # the shown map's full settings (JSON)
    "map_seconds",  # how long it took to compute (G5)
    "map_cached",  # 1: served from the cache (map_seconds: when it was made)
    "mark_iou",  # the rater's marks vs this panel's top-10 % region (localising studies)
)


def reader_marks(
    db: sqlite_utils.Database, study_id: int, real_names: bool = False
) -> list[dict[str, Any]]:
    """Every box raters drew where the finding is (study proper only), with its author."""
    who = "r.name" if real_names else "r.pseudonym"
    cursor = db.execute(
        f"select {who} as rater, m.case_id, m.target, m.x_min, m.y_min, m.x_max, m.y_max, "
        "m.iou_reference from reader_marks m join raters r on r.id = m.rater_id "
        "join assignments a on a.id = m.assignment_id "
        "where m.study_id = ? and a.practice = 0 order by m.id",
        [study_id],
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def case_images(db: sqlite_utils.Database, study_id: int) -> dict[str, str]:
    """Case id -> its image path under the data root ('' when not found there)."""
    from cxrxai.datasets.registry import load_split_cases
    from cxrxai.environment import data_root
    from cxrxai.errors import DatasetError

    found: dict[str, str] = {}
    splits = {
        (row["dataset"], row["split"])
        for row in db["study_cases"].rows_where("study_id = ?", [study_id])
    }
    for dataset, split in splits:
        try:
            cases = load_split_cases(dataset, split, data_root())  # a case's dataset field
        except DatasetError:
            continue
        found.update({case.case_id: str(case.image_path) for case in cases})
    return found


def crossover_pairs(db: sqlite_utils.Database, study_id: int, seed: int = 0) -> dict | None:
    """A crossover's paired reads: per rater and case, the read without explanations (one
    session) and the read with them (the other); the mean confidence and the share agreeing
    with the model each way, and the paired difference of confidence (with - without) with
    a bootstrap CI over the pairs. None for a study without crossover."""
    study = db["studies"].get(study_id)
    if study.get("washout_days") is None:
        return None
    cursor = db.execute(
        "select a.rater_id, a.case_id, f.agrees_with_model, f.confidence from assignments a "
        "join first_reads f on f.assignment_id = a.id "
        "where a.study_id = ? and a.condition = 'without' and a.practice = 0",
        [study_id],
    )
    without = {(r[0], r[1]): (r[2], r[3]) for r in cursor.fetchall()}
    cursor = db.execute(
        "select a.rater_id, a.case_id, max(g.agrees_with_model), max(g.confidence) "
        "from assignments a join ratings g on g.assignment_id = a.id "
        "where a.study_id = ? and a.condition = 'with' and a.practice = 0 "
        "group by a.id",
        [study_id],
    )
    aided = {(r[0], r[1]): (r[2], r[3]) for r in cursor.fetchall()}
    pairs = [(without[k], aided[k]) for k in sorted(set(without) & set(aided))]
    confident = [(w[1], a[1]) for w, a in pairs if w[1] is not None and a[1] is not None]
    differences = np.array([a - w for w, a in confident], float)

    def mean(values: list) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "pairs": len(pairs),
        "washout_days": study["washout_days"],
        "confidence_without": mean([w for w, _ in confident]),
        "confidence_with": mean([a for _, a in confident]),
        "confidence_difference": bootstrap_mean(differences, seed=seed).__dict__
        if len(differences)
        else None,
        "agrees_without": mean([w[0] for w, _ in pairs if w[0] is not None]),
        "agrees_with": mean([a[0] for _, a in pairs if a[0] is not None]),
    }


def staged_decisions(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Staged reveal, one read per assignment: how often the rater's decision matched the
    model's at each stage - the image alone (own label among the model's predicted
    labels), with the model's label (agrees, first read), with the explanations (agrees)."""
    reads = {}
    for row in rows:
        if row.get("image_read_label") is not None:
            reads[row["assignment_id"]] = row
    if not reads:
        return None
    alone = [
        r["image_read_label"] in (r.get("model_predicted") or "").split(";")
        for r in reads.values()
        if r.get("model_predicted")
    ]
    with_label = [r["agrees_before_explanations"] for r in reads.values()
                  if r.get("agrees_before_explanations") is not None]  # fmt: skip
    with_maps = [r["agrees_with_model"] for r in reads.values()
                 if r.get("agrees_with_model") is not None]  # fmt: skip

    def share(values: list) -> dict[str, Any] | None:
        return bootstrap_mean(np.array(values, float)).__dict__ if values else None

    return {
        "reads": len(reads),
        "matches_model_image_alone": share(alone),
        "agrees_with_model_label_shown": share(with_label),
        "agrees_with_model_explanations_shown": share(with_maps),
    }


def marks_summary(rows: list[dict[str, Any]], marks: list[dict[str, Any]]) -> dict[str, Any]:
    """How well readers' marks meet the reference (mean IoU over assignments) and each
    method's region (mean IoU per method): where readers look vs where the maps point."""
    by_method: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.get("mark_iou") is not None:
            by_method[row["method"]].append(row["mark_iou"])
    reference = [m["iou_reference"] for m in marks if m["iou_reference"] is not None]
    return {
        "marks": len(marks),
        "iou_with_reference": bootstrap_mean(np.array(reference, float)).__dict__
        if reference
        else None,
        "iou_with_panel_region": {
            method: bootstrap_mean(np.array(values, float)).__dict__
            for method, values in sorted(by_method.items())
        },
    }


def ratings(
    db: sqlite_utils.Database, study_id: int, real_names: bool = False, practice: bool = False
) -> list[dict[str, Any]]:
    """The study proper's ratings (``practice``: the familiarisation cases' instead, which
    the analysis leaves out); raters by pseudonym unless ``real_names``."""
    who = "r.name" if real_names else "r.pseudonym"
    cursor = db.execute(
        f"select {who} as rater, r.role, r.years_experience, r.ai_experience, g.*, "
        "f.agrees_with_model as agrees_before_explanations, f.seconds as first_read_seconds, "
        "f.confidence as confidence_before, c.model_correct as model_correct, "
        "i.label as image_read_label, i.confidence as image_read_confidence, "
        "c.predicted as model_predicted "
        "from ratings g join raters r on r.id = g.rater_id "
        "left join assignments a on a.id = g.assignment_id "
        "left join study_cases c on c.study_id = g.study_id and c.case_id = a.case_id "
        "and c.target = a.target "
        "left join first_reads f on f.assignment_id = g.assignment_id "
        "left join image_reads i on i.assignment_id = g.assignment_id "
        "where g.study_id = ? and g.practice = ? order by g.id",
        [study_id, int(practice)],
    )
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def summary(rows: list[dict[str, Any]], by: str = "method", seed: int = 0) -> list[dict]:
    """Mean (95 % bootstrap CI over ratings) and median of each score per ``by`` value."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row[by] if row[by] is not None else "not given"].append(row)
    out = []
    for key, members in sorted(groups.items()):
        entry: dict[str, Any] = {by: key, "n": len(members)}
        for score in SCORES:
            values = np.array([m[score] for m in members], dtype=float)
            estimate = bootstrap_mean(values, seed=seed)
            entry[f"{score}_mean"] = estimate.mean
            entry[f"{score}_ci"] = (estimate.low, estimate.high)
            entry[f"{score}_median"] = float(np.median(values))
        out.append(entry)
    return out


def informative_plausibility(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Jin et al.'s G4, per method: mean trust when the model was right and when it was
    wrong, and the AUC of each rating for telling the two apart (0.5: the ratings do not
    separate them). Needs cases whose model correctness is known, of both kinds."""
    out = []
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method and r.get("model_correct") is not None]
        right = [r for r in mine if r["model_correct"]]
        wrong = [r for r in mine if not r["model_correct"]]
        entry: dict[str, Any] = {"method": method, "n right": len(right), "n wrong": len(wrong)}
        for score in SCORES:
            entry[f"{score} right"] = _mean([r[score] for r in right])
            entry[f"{score} wrong"] = _mean([r[score] for r in wrong])
            entry[f"{score} AUC"] = (
                auc([int(r["model_correct"]) for r in mine], [r[score] for r in mine])
                if right and wrong
                else float("nan")
            )
        out.append(entry)
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def json_text(rows: list[dict[str, Any]]) -> str:
    """The ratings export as JSON (the raw text of every field; CSV neutralises formulas)."""
    return json.dumps([{c: r.get(c) for c in EXPORT_COLUMNS} for r in rows], indent=1)


def summary_table(rows: list[dict[str, Any]], by: str = "method") -> list[dict[str, Any]]:
    """:func:`summary` as people read it: each score's mean [95 % CI] and median, two
    decimals (2.3333333333333335 was shown as such)."""
    table = []
    for entry in summary(rows, by):
        row: dict[str, Any] = {by: entry[by], "n": entry["n"]}
        for score in SCORES:
            low, high = entry[f"{score}_ci"]
            row[f"{score} mean [95 % CI]"] = f"{entry[f'{score}_mean']:.2f} [{low:.2f}, {high:.2f}]"
            row[f"{score} median"] = f"{entry[f'{score}_median']:.1f}"
        table.append(row)
    return table


def _matrix(rows: list[dict[str, Any]], score: str) -> np.ndarray:
    """raters x units (unit = case x method) with NaN where a rater did not rate."""
    raters = sorted({r["rater"] for r in rows})
    units = sorted({(r["case_id"], r["method"]) for r in rows})
    matrix = np.full((len(raters), len(units)), np.nan)
    for r in rows:
        matrix[raters.index(r["rater"]), units.index((r["case_id"], r["method"]))] = r[score]
    return matrix


def decision_changes(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """How the explanations changed the raters' decisions, for studies with a first read:
    per (rater, case), agreement with the model before the explanations were shown and
    after (the answer given with the ratings). Fractions with 95 % bootstrap CIs over
    those reads; ``to_agree`` / ``to_disagree`` count the changes by direction."""
    reads: dict[tuple[str, int], tuple[float, float]] = {}
    for row in rows:
        before, after = row.get("agrees_before_explanations"), row["agrees_with_model"]
        if before is not None and after is not None:
            reads[(row["rater"], row["assignment_id"])] = (float(before), float(after))
    pairs = np.array(list(reads.values()), dtype=float).reshape(-1, 2)
    out: dict[str, Any] = {"n": len(pairs)}
    for name, values in (
        ("agree_before", pairs[:, 0]),
        ("agree_after", pairs[:, 1]),
        ("changed", pairs[:, 0] != pairs[:, 1]),
    ):
        estimate = bootstrap_mean(values.astype(float), seed=seed)
        out[name] = estimate.mean
        out[f"{name}_ci"] = (estimate.low, estimate.high)
    out["to_agree"] = int(((pairs[:, 0] == 0) & (pairs[:, 1] == 1)).sum())
    out["to_disagree"] = int(((pairs[:, 0] == 1) & (pairs[:, 1] == 0)).sum())
    return out


def krippendorff_alpha(rows: list[dict[str, Any]], score: str = "trust") -> float:
    """Krippendorff's alpha, ordinal, over units rated by at least two raters."""
    import krippendorff

    matrix = _matrix(rows, score)
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    if matrix.shape[0] < 2 or pairable.sum() < 1 or np.nanstd(matrix[:, pairable]) == 0:
        return float("nan")  # no pairs, or no variation at all: alpha is undefined
    return float(
        krippendorff.alpha(
            reliability_data=matrix[:, pairable],
            level_of_measurement="ordinal",
            value_domain=[1, 2, 3, 4, 5],
        )
    )


def icc_2_1(rows: list[dict[str, Any]], score: str = "trust") -> float:
    """ICC(2,1) (Shrout & Fleiss: two-way random effects, absolute agreement, one rater)
    over the units every rater rated.

    Written here from the ANOVA mean squares: the well-kept implementations (pingouin,
    statsmodels) would add a large dependency for one formula.
    """
    matrix = _matrix(rows, score)
    complete = matrix[:, ~np.isnan(matrix).any(axis=0)].T  # units x raters
    n, k = complete.shape
    if n < 2 or k < 2:
        return float("nan")
    grand = complete.mean()
    ms_rows = k * ((complete.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    ms_cols = n * ((complete.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    residual = complete - complete.mean(axis=1, keepdims=True) - complete.mean(axis=0) + grand
    ms_error = (residual**2).sum() / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error + k * (ms_cols - ms_error) / n
    return float((ms_rows - ms_error) / denominator) if denominator else float("nan")


def trust_vs_metric(
    rows: list[dict[str, Any]],
    metric: dict[tuple[str, str], float],
    score: str = "trust",
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Spearman correlation between a score and a localisation metric of the same
    (case, method), with a bootstrap 95 % CI over ratings."""
    pairs = np.array(
        [
            (r[score], metric[(r["case_id"], r["method"])])
            for r in rows
            if metric.get((r["case_id"], r["method"])) is not None
        ],
        dtype=float,
    )
    if len(pairs) < 3:
        return {"rho": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(pairs)}
    rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        pick = pairs[rng.integers(0, len(pairs), len(pairs))]
        if np.ptp(pick[:, 0]) > 0 and np.ptp(pick[:, 1]) > 0:
            samples.append(spearmanr(pick[:, 0], pick[:, 1]).statistic)
    low, high = np.quantile(samples, [0.025, 0.975]) if samples else (np.nan, np.nan)
    return {"rho": rho, "low": float(low), "high": float(high), "n": len(pairs)}


def export(
    db: sqlite_utils.Database, study_id: int, out_dir: Path, real_names: bool = False
) -> list[Path]:
    """ratings.csv / .json, progress.csv, summary_by_method.json, iMRMC's input file
    (imrmc_input.imrmc) and which of its ids is which reader and case (imrmc_ids.csv)
    into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ratings(db, study_id, real_names)
    written = []
    path = out_dir / "ratings.csv"
    write_csv(path, rows, EXPORT_COLUMNS)
    written.append(path)
    path = out_dir / "ratings.json"
    path.write_text(json_text(rows))
    written.append(path)
    practice = ratings(db, study_id, real_names, practice=True)
    if practice:  # familiarisation, kept apart and out of every figure below
        path = out_dir / "practice_ratings.csv"
        write_csv(path, practice, EXPORT_COLUMNS)
        written.append(path)
    marks = reader_marks(db, study_id, real_names)
    if marks:  # as a manifest: readers' marks as the truth in `evaluate`
        from cxrxai.study.marks import MANIFEST_COLUMNS, manifest_rows

        path = out_dir / "reader_marks.csv"
        write_csv(path, manifest_rows(marks, case_images(db, study_id)), MANIFEST_COLUMNS)
        written.append(path)
    path = out_dir / "progress.csv"
    write_csv(path, progress(db, study_id), ["rater", "done", "total"])
    written.append(path)
    path = out_dir / IMRMC_FILE
    study = db["studies"].get(study_id)
    path.write_text(imrmc_text(rows, study["name"]))
    written.append(path)
    path = out_dir / "imrmc_ids.csv"
    write_csv(path, imrmc_ids(rows), ["kind", "imrmc_id", "export_id"])
    written.append(path)
    path = out_dir / "summary_by_method.json"
    path.write_text(
        json.dumps(
            {
                "by_method": summary(rows, "method"),
                "by_class": summary(rows, "target"),
                "krippendorff_alpha_trust": krippendorff_alpha(rows),
                "icc_2_1_trust": icc_2_1(rows),
                "decision_changes": decision_changes(rows),
                "by_role": summary(rows, "role") if any(r.get("role") for r in rows) else [],
                "reader_averaged_auc": reader_study(rows),
                "informative_plausibility": informative_plausibility(rows),
                "reader_localisation": marks_summary(rows, marks) if marks else None,
                "real_vs_sham": sham_comparison(rows),
                "staged_reveal": staged_decisions(rows),
                "crossover": crossover_pairs(db, study_id),
            },
            indent=1,
            default=float,
        )
    )
    written.append(path)
    return written
