"""What the researcher's Cases page shows: filtered result rows, summaries and the
qualitative picks SHAMSUL used per class (best IoU, highest probability, a multi-label
case), all read from the batch evaluation's database."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from cxrxai import settings
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.compare import comparison_table, paired_comparisons
from cxrxai.evaluation.store import LOCALISATION
from cxrxai.metrics.registry import METRICS, SHORTCUT_LUNG_SHARE

# What the Cases page draws at once: a whole split's rows (hundreds of thousands) stay
# in the CSV download; the table shows the first TABLE_ROWS, the box plot a seeded sample.
TABLE_ROWS = 5_000
PLOT_POINTS = 20_000


def sample_rows(rows: list[dict[str, Any]], limit: int, seed: int = 0) -> list[dict[str, Any]]:
    """At most ``limit`` of ``rows``, chosen at random (reproducibly) and kept in order."""
    if len(rows) <= limit:
        return rows
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return [rows[i] for i in chosen]


def unit_values(
    db: sqlite_utils.Database, metric: str = "iou", mode: str = "top-percent", value: float = 10.0
) -> dict[tuple[str, str], float | None]:
    """(case_id, method) -> the metric at one region setting: what the study's analysis
    relates trust to."""
    if metric not in METRICS:
        raise CxrxaiError(f"Unknown metric '{metric}'; choose one of {list(METRICS)}")
    return {
        (row["case_id"], row["method"]): row[metric]
        for row in db[LOCALISATION].rows_where("mode = ? and value = ?", [mode, value])
    }


def results_to_browse() -> tuple[Path | None, bool]:
    """The database the Cases page opens, and whether it is the demo's: the batch
    evaluation's (:func:`cxrxai.settings.results_path`) when it exists, else the demo's (so a
    fresh install shows the page at work), else none."""
    path = settings.results_path()
    if path.is_file():
        return path, False
    demo = settings.demo_results_path()
    return (demo, True) if demo.is_file() else (None, False)


@dataclass
class Filters:
    mode: str = "top-percent"
    value: float = 10.0
    classes: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    correct: bool | None = None  # None = both
    iou_min: float = 0.0
    iou_max: float = 1.0
    include_missing_iou: bool = True
    shortcut: bool | None = None  # True: flagged maps only; False: unflagged only


def region_settings(db: sqlite_utils.Database) -> list[tuple[str, float]]:
    rows = db.execute(f"select distinct mode, value from {LOCALISATION} order by mode, value")
    return [(r[0], float(r[1])) for r in rows.fetchall()]


def distinct(db: sqlite_utils.Database, column: str) -> list[str]:
    if column not in {"method", "target", "dataset"}:
        raise ValueError(f"not a browsable column: {column}")
    rows = db.execute(f"select distinct {column} from {LOCALISATION} order by {column}")
    return [r[0] for r in rows.fetchall()]


def filtered_rows(db: sqlite_utils.Database, filters: Filters) -> list[dict[str, Any]]:
    """Rows at one region setting, filtered; parameters are bound, never pasted into SQL."""
    where = ["mode = ?", "value = ?"]
    params: list[Any] = [filters.mode, filters.value]
    if filters.classes:
        where.append(f"target in ({', '.join('?' * len(filters.classes))})")
        params += list(filters.classes)
    if filters.methods:
        where.append(f"method in ({', '.join('?' * len(filters.methods))})")
        params += list(filters.methods)
    if filters.correct is not None:
        where.append("correct = ?")
        params.append(int(filters.correct))
    if filters.shortcut is not None:
        # flagged: less than half of the positive relevance inside the lungs
        where.append("lung_relevance < ?" if filters.shortcut else "lung_relevance >= ?")
        params.append(SHORTCUT_LUNG_SHARE)
    iou = "(iou between ? and ?)"
    where.append(f"({iou} or iou is null)" if filters.include_missing_iou else iou)
    params += [filters.iou_min, filters.iou_max]
    return list(db[LOCALISATION].rows_where(" and ".join(where), params, order_by="case_id"))


def comparison_filters(filters: Filters) -> Filters:
    """The filters a paired comparison reads its rows with: the IoU range is not applied,
    since a pair needs each case of both methods."""
    return dataclasses.replace(filters, iou_min=0.0, iou_max=1.0, include_missing_iou=True)


def compared_methods(
    db: sqlite_utils.Database,
    filters: Filters,
    metric: str = "iou",
    rows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The Cases page's paired comparison of methods (:mod:`cxrxai.evaluation.compare`)
    over the filtered classes, methods and correctness at the region setting
    (:func:`comparison_filters`); ``rows``: those rows when the caller has read them."""
    if rows is None:
        rows = filtered_rows(db, comparison_filters(filters))
    return comparison_table(paired_comparisons(rows, metric))


@dataclass
class Pick:
    kind: str  # "best IoU", "highest probability", "multi-label"
    target: str
    case_id: str
    dataset: str
    split: str
    detail: str


def qualitative_picks(rows: list[dict[str, Any]]) -> list[Pick]:
    """Per class: the case with the best IoU (over methods), the most confident correct
    prediction, and a case with several labels when there is one."""
    picks: list[Pick] = []
    for target in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == target]
        scored = [r for r in mine if r["iou"] is not None]
        if scored:
            best = max(scored, key=lambda r: r["iou"])
            picks.append(_pick("best IoU", best, f"IoU {best['iou']:.3f} ({best['method']})"))
        confident = max(mine, key=lambda r: (r["correct"] or 0, r["probability"] or 0.0))
        picks.append(_pick("highest probability", confident, f"p = {confident['probability']:.3f}"))
        multi = next((r for r in mine if ";" in (r["case_labels"] or "")), None)
        if multi is not None:
            picks.append(_pick("multi-label", multi, multi["case_labels"].replace(";", ", ")))
    return picks


def _pick(kind: str, row: dict[str, Any], detail: str) -> Pick:
    return Pick(kind, row["target"], row["case_id"], row["dataset"], row["split"], detail)
