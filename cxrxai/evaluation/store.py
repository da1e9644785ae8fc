"""The results database of a batch evaluation (SQLite through sqlite-utils).

One row per case x method x target x region mode x value in ``localisation``; one row per
case x method x target in ``faithfulness``; one row per run in ``runs``. The dashboard's
Cases page and ``python -m cxrxai report`` read the same file.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlite_utils

from cxrxai.errors import CxrxaiError
from cxrxai.metrics.registry import METRICS
from cxrxai.sqlitedb import write_transaction

LOCALISATION = "localisation"
FAITHFULNESS = "faithfulness"
RUNS = "runs"
UNIT_KEY = ("checkpoint_sha256", "case_id", "method", "target")
LOCALISATION_KEY = (*UNIT_KEY, "mode", "value")


def open_results(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) a results database with its tables and indexes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite_utils.Database(path)
        db.enable_wal()
    except Exception as exc:  # sqlite3.DatabaseError for a file that is not SQLite
        raise CxrxaiError(
            f"Results database '{path}' could not be opened ({exc}); pass a new file name."
        ) from exc
    columns: dict[str, Any] = {
        "checkpoint_sha256": str,
        "case_id": str,
        "dataset": str,
        "split": str,
        "case_labels": str,
        "method": str,
        "target": str,
        "predicted": str,
        "correct": int,
        "probability": float,
        "mode": str,
        "value": float,
        "unit": str,
        "n_truth_pixels": int,
        "n_raters": int,
    }
    columns |= {name: float for name in METRICS}
    if LOCALISATION not in db.table_names():
        db[LOCALISATION].create(columns, pk=LOCALISATION_KEY)
        db[LOCALISATION].create_index(["method", "mode", "value"])
    if FAITHFULNESS not in db.table_names():
        db[FAITHFULNESS].create(
            {
                "checkpoint_sha256": str,
                "case_id": str,
                "method": str,
                "target": str,
                "deletion_auc": float,
                "insertion_auc": float,
                "pixel_importance": str,  # JSON rows: replacement, percent, drop
            },
            pk=UNIT_KEY,
        )
    if RUNS not in db.table_names():
        db[RUNS].create(
            {
                "id": int,
                "started": str,
                "checkpoint": str,
                "checkpoint_sha256": str,
                "data": str,
                "split": str,
                "methods": str,
                "settings": str,
            },
            pk="id",
        )
    return db


def done_units(db: sqlite_utils.Database, checkpoint_sha256: str) -> set[tuple[str, str]]:
    """(case_id, method) pairs already evaluated for this checkpoint (for resuming)."""
    rows = db.execute(
        f"select distinct case_id, method from {LOCALISATION} where checkpoint_sha256 = ?",
        [checkpoint_sha256],
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


def write_unit(
    db: sqlite_utils.Database,
    localisation: list[dict[str, Any]],
    faithfulness: list[dict[str, Any]],
) -> None:
    """All rows of one case x method in one transaction: an interruption never leaves a
    half-written unit, so resuming can trust :func:`done_units`."""
    with write_transaction(db):
        if localisation:
            db[LOCALISATION].upsert_all(localisation, pk=LOCALISATION_KEY)
        if faithfulness:
            db[FAITHFULNESS].upsert_all(faithfulness, pk=UNIT_KEY)


def export_csv(db: sqlite_utils.Database, table: str, path: Path) -> int:
    """Write a table as CSV; returns the row count."""
    rows: Iterable[dict[str, Any]] = db[table].rows
    count = 0
    with open(path, "w", newline="") as handle:
        writer: csv.DictWriter | None = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            count += 1
    return count


def settings_json(**settings: Any) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def record_run(
    db: sqlite_utils.Database,
    checkpoint: Path | str | None,
    checkpoint_sha256: str,
    data: Path | str,
    split: str,
    methods: list[str],
    **settings: Any,
) -> None:
    """One row in ``runs``: what an evaluation was started on, and when."""
    db[RUNS].insert(
        {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha256,
            "data": str(data),
            "split": split,
            "methods": ",".join(methods),
            "settings": settings_json(**settings),
        }
    )
