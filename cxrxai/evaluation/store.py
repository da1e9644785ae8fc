"""The results database of a batch evaluation (SQLite through sqlite-utils).

One row per case x method x target x region mode x value in ``localisation``; one row per
case x method x target in ``faithfulness``; one row per run in ``runs``. The dashboard's
Cases page and ``python -m cxrxai report`` read the same file.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from cxrxai.csvout import write_csv
from cxrxai.errors import CxrxaiError
from cxrxai.metrics.registry import METRICS
from cxrxai.sqlitedb import check_version, repair_schema, timestamp, write_transaction

LOCALISATION = "localisation"
FAITHFULNESS = "faithfulness"
RUNS = "runs"
SUMMARIES = "summaries"
META = "meta"
UNIT_KEY = ("checkpoint_sha256", "case_id", "method", "target")
LOCALISATION_KEY = (*UNIT_KEY, "mode", "value")


# What the stored metric values mean. Bumped when a metric's definition changes, so that
# resuming recomputes the rows of an older definition instead of keeping them as done:
# 2 = the pointing game decided by one maximum pixel (a constant map a miss) and Otsu
# regions equal to CheXlocalize's (before: any tied maximum, rounded 0-255).
METRICS_VERSION = 2

migrations = Migrations("cxrxai-results")

# The metric columns of the first schema; later metrics add their own (ensure_columns).
_INITIAL_METRICS = (
    "iou", "dice", "precision", "recall", "hausdorff", "hd95", "mean_distance", "hit",
    "relevance_mass", "relevance_rank", "box_iou_mean", "box_iou_max", "box_iou_pairs_mean",
)  # fmt: skip


@migrations(name="m001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    """The schema before migrations existed; a database of that time already has it."""
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
    } | {name: float for name in _INITIAL_METRICS}
    db[LOCALISATION].create(columns, pk=LOCALISATION_KEY, if_not_exists=True)
    db[LOCALISATION].create_index(["method", "mode", "value"], if_not_exists=True)
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
        if_not_exists=True,
    )
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
        if_not_exists=True,
    )


@migrations(name="m002_metrics_version")
def _metrics_version(db: sqlite_utils.Database) -> None:
    """Rows say which definition of the metrics computed them; rows from before carry
    none (NULL), so they count as not done and are recomputed on resuming."""
    db[LOCALISATION].add_column("metrics_version", int)
    db[FAITHFULNESS].add_column("metrics_version", int)


@migrations(name="m003_lungs_source")
def _lungs_source(db: sqlite_utils.Database) -> None:
    """Where each row's lung fields came from: 'reference' (the dataset's mask),
    'predicted' (the lung-field model) or NULL (none: older rows, or no model)."""
    db[LOCALISATION].add_column("lungs", str)


@migrations(name="m004_summaries")
def _summaries(db: sqlite_utils.Database) -> None:
    """Summaries computed once per state of the rows (:mod:`cxrxai.evaluation.summaries`),
    the count of writes that tells that state, and the index the Cases page reads a
    region setting's rows in case order with."""
    db[SUMMARIES].create({"key": str, "version": str, "value": str}, pk="key", if_not_exists=True)
    db[META].create({"key": str, "value": int}, pk="key", if_not_exists=True)
    db[LOCALISATION].create_index(["mode", "value", "case_id"], if_not_exists=True)


@migrations(name="m005_lung_source_column")
def _lung_source_column(db: sqlite_utils.Database) -> None:
    """The column of where the lung fields came from is called ``lung_source``: its first
    name, ``lungs``, read as the lung fields themselves. Renamed in place (no copy of the
    rows); summaries kept under the old name no longer hold."""
    columns = db[LOCALISATION].columns_dict
    if "lungs" in columns and "lung_source" not in columns:
        db.execute(f"alter table {LOCALISATION} rename column lungs to lung_source")
    count_write(db)


def count_write(db: sqlite_utils.Database) -> None:
    """One more write of rows (inside the writer's transaction): stored summaries of the
    rows before it no longer hold."""
    db.execute(
        f"insert into {META} (key, value) values ('writes', 1) "
        "on conflict(key) do update set value = value + 1"
    )


def writes(db: sqlite_utils.Database) -> int:
    """How many times rows were written through this module (0 for a new database)."""
    row = db.execute(f"select value from {META} where key = 'writes'").fetchone()
    return int(row[0]) if row and isinstance(row[0], int) else 0


def ensure_metric_columns(db: sqlite_utils.Database) -> None:
    """A column for every metric of the registry: a metric added after a database was
    made gets its column (NULL in older rows) instead of failing every write with
    "no such column"."""
    present = set(db[LOCALISATION].columns_dict)
    for name in METRICS:
        if name not in present:
            db[LOCALISATION].add_column(name, float)


def open_results(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) a results database, its schema migrated in place (safe to
    rerun; rows are kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite_utils.Database(path)
        db.enable_wal()
        label = f"Results database '{path}'"
        with write_transaction(db):
            check_version(db, migrations, label)
            migrations.apply(db)
            repair_schema(db, migrations, label)
            ensure_metric_columns(db)
    except sqlite3.DatabaseError as exc:  # a file that is not SQLite, or damaged
        raise CxrxaiError(
            f"Results database '{path}' could not be opened ({exc}); pass a new file name."
        ) from exc
    return db


def done_units(db: sqlite_utils.Database, checkpoint_sha256: str) -> set[tuple[str, str]]:
    """(case_id, method) pairs already evaluated for this checkpoint with the current
    definition of the metrics (for resuming; older rows are recomputed and replaced)."""
    rows = db.execute(
        f"select distinct case_id, method from {LOCALISATION} "
        "where checkpoint_sha256 = ? and metrics_version = ?",
        [checkpoint_sha256, METRICS_VERSION],
    ).fetchall()
    return {(r[0], r[1]) for r in rows}


STALE_NOTE = (
    "{n} row(s) were computed by an older definition of the metrics (before the pointing "
    "game was decided by one maximum pixel and Otsu regions matched CheXlocalize's); "
    "rerun the command that wrote them (evaluate, or precompute-demo for the demo) to "
    "recompute just those."
)


def stale_rows(db: sqlite_utils.Database) -> int:
    """Rows computed by an older definition of the metrics (:data:`METRICS_VERSION`)."""
    return db.execute(
        f"select count(*) from {LOCALISATION} where metrics_version is null or metrics_version < ?",
        [METRICS_VERSION],
    ).fetchone()[0]


def write_unit(
    db: sqlite_utils.Database,
    localisation: list[dict[str, Any]],
    faithfulness: list[dict[str, Any]],
) -> None:
    """All rows of one case x method in one transaction: an interruption never leaves a
    half-written unit, so resuming can trust :func:`done_units`."""
    version = {"metrics_version": METRICS_VERSION}
    with write_transaction(db):
        if localisation:
            db[LOCALISATION].upsert_all(
                [row | version for row in localisation], pk=LOCALISATION_KEY
            )
        if faithfulness:
            db[FAITHFULNESS].upsert_all([row | version for row in faithfulness], pk=UNIT_KEY)
        count_write(db)


def export_csv(db: sqlite_utils.Database, table: str, path: Path) -> int:
    """Write a table as CSV (:mod:`cxrxai.csvout`); returns the row count."""
    return write_csv(path, db[table].rows)


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
            "started": timestamp(),  # UTC, as the study database stores moments
            "checkpoint": str(checkpoint),
            "checkpoint_sha256": checkpoint_sha256,
            "data": str(data),
            "split": split,
            "methods": ",".join(methods),
            "settings": settings_json(**settings),
        }
    )


def merge_results(db: sqlite_utils.Database, shards: list[Path]) -> dict[str, int]:
    """Copy every row of the ``shards`` (databases written by separate ``evaluate --shard``
    runs) into ``db``, each shard in one transaction; returns the rows added per table.

    For runs past the single writer's rate (docs/benchmarks.md): each shard's driver
    writes its own file and this joins them. A unit in two shards is kept once (its key);
    each shard is opened (and migrated) as a results database first, so a file that is
    not one is refused by name before anything is copied.
    """
    target = Path(db.conn.execute("pragma database_list").fetchone()[2]).resolve()
    for path in shards:
        if not Path(path).is_file():
            raise CxrxaiError(f"Results database '{path}' not found; nothing was merged.")
        if Path(path).resolve() == target:
            raise CxrxaiError(f"'{path}' is the database being merged into; name another.")
        open_results(path).conn.close()  # refuses a file that is not a results database
    added = {LOCALISATION: 0, FAITHFULNESS: 0, RUNS: 0}
    for path in shards:
        db.execute("ATTACH DATABASE ? AS shard", [str(path)])
        try:
            with write_transaction(db):
                for table in added:
                    added[table] += _copy_table(db, table)
                count_write(db)
        finally:
            db.execute("DETACH DATABASE shard")
    return added


def _copy_table(db: sqlite_utils.Database, table: str) -> int:
    theirs = [row[1] for row in db.execute(f"pragma shard.table_info({table})").fetchall()]
    ours = set(db[table].columns_dict)
    for name in theirs:  # a metric the shard's code had and this file lacks
        if name not in ours and name in METRICS:
            db[table].add_column(name, float)
    columns = [name for name in theirs if name in ours or name in METRICS]
    if table == RUNS:  # new ids here; the runs keep what they were started on
        columns = [name for name in columns if name != "id"]
    # the column names come from this code (ours) or the metric registry, never the file
    listed = ", ".join(f'"{name}"' for name in columns)
    before = db.execute(f"select count(*) from main.{table}").fetchone()[0]
    if table == RUNS:  # a run already merged (same start and settings) is not added again
        same = " and ".join(f'r."{name}" is s."{name}"' for name in columns)
        db.execute(
            f"insert into main.{table} ({listed}) select {listed} from shard.{table} as s "
            f"where not exists (select 1 from main.{table} as r where {same})"
        )
    else:
        db.execute(
            f"insert or replace into main.{table} ({listed}) select {listed} from shard.{table}"
        )
    return db.execute(f"select count(*) from main.{table}").fetchone()[0] - before
