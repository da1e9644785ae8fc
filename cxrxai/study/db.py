"""The study database: SQLite through sqlite-utils, versioned with its Migrations.

WAL mode so raters read while others write; one connection per session or thread (the
callers open their own with :func:`connect`); every write of the service runs inside
``db.atomic()``. Schema: docs/study-schema.md.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from cxrxai.errors import CxrxaiError
from cxrxai.sqlitedb import check_version, make_private, repair_schema, write_transaction
from cxrxai.study.names import name_key

migrations = Migrations("cxrxai-study")


@migrations(name="m001_initial")
def _initial(db: sqlite_utils.Database) -> None:
    db["settings"].create({"key": str, "value": str}, pk="key")
    db["studies"].create(
        {
            "id": int,
            "code": str,
            "name": str,
            "mode": str,  # "blinded" or "open"
            "methods": str,  # JSON list
            "seed": int,
            "instructions": str,
            "created_at": str,
        },
        pk="id",
    )
    db["studies"].create_index(["code"], unique=True)
    db["study_cases"].create(
        {
            "study_id": int,
            "position": int,
            "case_id": str,
            "dataset": str,
            "split": str,
            "target": str,
        },
        pk=("study_id", "position"),
        foreign_keys=[("study_id", "studies", "id")],
    )
    db["raters"].create(
        {"id": int, "study_id": int, "name": str, "token_hash": str, "created_at": str},
        pk="id",
        foreign_keys=[("study_id", "studies", "id")],
    )
    db["raters"].create_index(["study_id", "name"], unique=True)
    db["assignments"].create(
        {
            "id": int,
            "study_id": int,
            "rater_id": int,
            "position": int,
            "case_id": str,
            "dataset": str,
            "split": str,
            "target": str,
            "methods_order": str,  # JSON: real method names in display order
        },
        pk="id",
        foreign_keys=[("study_id", "studies", "id"), ("rater_id", "raters", "id")],
    )
    db["assignments"].create_index(["rater_id", "position"], unique=True)
    db["ratings"].create(
        {
            "id": int,
            "assignment_id": int,
            "rater_id": int,
            "study_id": int,
            "case_id": str,
            "method": str,  # the real method, also when the rater saw only a letter
            "shown_as": str,  # "A", "B", ... (blinded) or the method name (open)
            "target": str,
            "trust": int,
            "localisation": int,
            "usefulness": int,
            "agrees_with_model": int,  # 1 yes, 0 no
            "comment": str,
            "display": str,  # JSON: opacity, threshold, panels shown
            "seconds_on_case": float,
            "started_at": str,
            "submitted_at": str,
            "app_version": str,
            "checkpoint_sha256": str,
        },
        pk="id",
        foreign_keys=[("assignment_id", "assignments", "id"), ("rater_id", "raters", "id")],
    )
    # one rating per panel: a double click or a resubmit after a reload cannot add another
    db["ratings"].create_index(["assignment_id", "method"], unique=True)
    db["audit"].create({"id": int, "at": str, "actor": str, "action": str, "detail": str}, pk="id")
    # append-only: the log cannot be edited or deleted through SQL
    db.execute(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
    )


@migrations(name="m002_pseudonyms")
def _pseudonyms(db: sqlite_utils.Database) -> None:
    """Exports name raters by a stable pseudonym (R01, R02, ... per study)."""
    db["raters"].add_column("pseudonym", str)
    counters: dict[int, int] = {}
    for row in list(db["raters"].rows_where(order_by="id")):
        counters[row["study_id"]] = counters.get(row["study_id"], 0) + 1
        db["raters"].update(row["id"], {"pseudonym": f"R{counters[row['study_id']]:02d}"})


@migrations(name="m003_first_reads")
def _first_reads(db: sqlite_utils.Database) -> None:
    """A study may ask for each case's read before the explanations are shown (how
    explanations change clinicians' decisions); existing studies do not."""
    db["studies"].add_column("first_read", int, not_null_default=0)
    db["first_reads"].create(
        {
            "assignment_id": int,
            "rater_id": int,
            "study_id": int,
            "agrees_with_model": int,  # 1 yes, 0 no: before any explanation was shown
            "at": str,
        },
        pk="assignment_id",  # one per assignment, never replaced
        foreign_keys=[("assignment_id", "assignments", "id"), ("rater_id", "raters", "id")],
    )


@migrations(name="m004_name_keys")
def _name_keys(db: sqlite_utils.Database) -> None:
    """Names are unique per study by their key (NFKC, case-folded, invisible characters
    removed: cxrxai.study.names.name_key), not byte for byte: "alice" and "Alice" were
    two raters. Raters who already share a key keep their accounts (their key gets the
    rater id appended)."""
    db["raters"].add_column("name_key", str)
    seen: set[tuple[int, str]] = set()
    for row in list(db["raters"].rows_where(order_by="id")):
        key = name_key(row["name"])
        if (row["study_id"], key) in seen:
            key = f"{key}#{row['id']}"
        seen.add((row["study_id"], key))
        db["raters"].update(row["id"], {"name_key": key})
    db["raters"].create_index(["study_id", "name_key"], unique=True)


@migrations(name="m005_timing_and_explained_label")
def _timing_and_explained_label(db: sqlite_utils.Database) -> None:
    """Time on task runs from when the panels are on screen (waiting for maps to compute
    is recorded apart, ``wait_seconds``, and never analysed); the first read has its own
    time. A study says which label the panels explain: new studies the model's
    prediction, studies made before keep the reference label they showed."""
    db["ratings"].add_column("wait_seconds", float)
    db["ratings"].add_column("explained_label", str)
    db["first_reads"].add_column("seconds", float)
    db["studies"].add_column("explain", str, not_null_default="reference")


@migrations(name="m006_reader_profile_and_confidence")
def _reader_profile_and_confidence(db: sqlite_utils.Database) -> None:
    """DECIDE-AI's reader profile (role, years of experience, prior use of AI tools) per
    rater, and the rater's confidence (0-100) that the explained finding is present, in
    the first read and with the explanations (the MRMC analysis' scores). Raters and
    ratings from before have none (NULL)."""
    db["raters"].add_column("role", str)
    db["raters"].add_column("years_experience", int)
    db["raters"].add_column("ai_experience", str)
    db["first_reads"].add_column("confidence", int)
    db["ratings"].add_column("confidence", int)


@migrations(name="m007_model_correctness")
def _model_correctness(db: sqlite_utils.Database) -> None:
    """Per study case, what the model predicted and whether that was right (its reference
    label among the labels the model calls positive): Jin et al.'s G4 asks whether trust
    tells the model's right decisions from its wrong ones. NULL for cases from before."""
    db["study_cases"].add_column("predicted", str)
    db["study_cases"].add_column("model_correct", int)


@migrations(name="m008_map_provenance")
def _map_provenance(db: sqlite_utils.Database) -> None:
    """Per rating, the shown map's full settings (JSON, defaults included), the seconds it
    took to compute, and whether it came from the cache (then the seconds are when it was
    first made): Jin et al.'s G5 asks for the explanation's computational cost. NULL for
    ratings from before."""
    db["ratings"].add_column("method_settings", str)
    db["ratings"].add_column("map_seconds", float)
    db["ratings"].add_column("map_cached", int)


@migrations(name="m009_prepared_maps")
def _prepared_maps(db: sqlite_utils.Database) -> None:
    """Maps computed before raters arrive: one row per study case x method once its map is
    in the heatmap cache (the worker's progress, kept across restarts). ``prepare``: 1 for
    studies that open when every map is ready; 0 for studies made before, which keep
    computing maps on the page as they did."""
    db["studies"].add_column("prepare", int, not_null_default=0)
    db["study_maps"].create(
        {
            "study_id": int,
            "position": int,
            "method": str,
            "image_sha256": str,
            "target": str,  # the label the map explains
            "seconds": float,  # how long the map took
            "cached": int,  # 1: it was in the cache already
        },
        pk=("study_id", "position", "method"),
        foreign_keys=[("study_id", "studies", "id")],
    )


@migrations(name="m010_practice_cases")
def _practice_cases(db: sqlite_utils.Database) -> None:
    """Familiarisation: practice cases shown before the study proper, marked on the study
    case, the assignment and the rating (1), and left out of the analysis and exports."""
    db["study_cases"].add_column("practice", int, not_null_default=0)
    db["assignments"].add_column("practice", int, not_null_default=0)
    db["ratings"].add_column("practice", int, not_null_default=0)


@migrations(name="m011_reader_marks")
def _reader_marks(db: sqlite_utils.Database) -> None:
    """Reader localisation: the boxes a rater draws where the finding is (one row each),
    the marks' IoU with the reference annotation, and per rating the IoU of the marks
    with that panel's region. ``localise``: 1 for studies that ask for marks."""
    db["studies"].add_column("localise", int, not_null_default=0)
    db["ratings"].add_column("mark_iou", float)
    db["reader_marks"].create(
        {
            "id": int,
            "assignment_id": int,
            "rater_id": int,
            "study_id": int,
            "case_id": str,
            "target": str,
            "x_min": float,
            "y_min": float,
            "x_max": float,
            "y_max": float,
            "iou_reference": float,  # the union of the rater's marks vs the reference
            "at": str,
        },
        pk="id",
        foreign_keys=[("assignment_id", "assignments", "id"), ("rater_id", "raters", "id")],
    )


@migrations(name="m012_staged_reveal")
def _staged_reveal(db: sqlite_utils.Database) -> None:
    """Staged reveal (Rainey et al.): the image alone first - the rater's own label and
    confidence, nothing of the model shown - then the model's label (the first read),
    then the explanations. ``staged``: 1 for studies that ask for the three stages."""
    db["studies"].add_column("staged", int, not_null_default=0)
    db["image_reads"].create(
        {
            "assignment_id": int,
            "rater_id": int,
            "study_id": int,
            "label": str,  # the rater's own reading: one of the model's labels
            "confidence": int,  # 0-100 that this label is right
            "seconds": float,
            "at": str,
        },
        pk="assignment_id",
        foreign_keys=[("assignment_id", "assignments", "id"), ("rater_id", "raters", "id")],
    )


@migrations(name="m013_crossover")
def _crossover(db: sqlite_utils.Database) -> None:
    """Crossover with washout: every case read twice by each rater, in two sessions at
    least ``washout_days`` apart, once with the explanations and once without (the read
    then is the first read alone). ``washout_days`` NULL: no crossover."""
    db["studies"].add_column("washout_days", int)
    db["assignments"].add_column("session", int, not_null_default=1)
    db["assignments"].add_column("condition", str, not_null_default="with")


def connect(path: Path | str) -> sqlite_utils.Database:
    """A connection of its own (one per session or thread), WAL mode, schema migrated in
    place (safe to rerun; rows are kept)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_private(path)  # it holds raters' names
    try:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        db.execute("PRAGMA busy_timeout = 30000")
        db.enable_wal()
        db.execute("PRAGMA foreign_keys = ON")
        # One process migrates at a time: the write lock is taken before the pending
        # migrations are read (sqlite-utils nests its per-migration transactions inside).
        label = f"Study database '{path}'"
        with write_transaction(db):
            check_version(db, migrations, label)
            migrations.apply(db)
            repair_schema(db, migrations, label)
    except sqlite3.DatabaseError as exc:
        raise CxrxaiError(
            f"Study database '{path}' could not be opened ({exc}). Is it a cxrxai study "
            "database? Pass another file with --study-db or $CXRXAI_STUDY_DB."
        ) from exc
    return db
