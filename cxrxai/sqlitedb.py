"""SQLite helpers shared by the results and study databases."""

from __future__ import annotations

import calendar
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from cxrxai.errors import CxrxaiError

PRIVATE_MODE = 0o600


TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # how every database of cxrxai stores a moment: UTC


def timestamp(epoch_seconds: float | None = None) -> str:
    """A moment (default: now) as the databases store it: UTC, to the second."""
    return time.strftime(
        TIMESTAMP_FORMAT, time.gmtime(time.time() if epoch_seconds is None else epoch_seconds)
    )


def epoch_seconds(stored: str) -> float:
    """A stored :func:`timestamp` back to seconds since the epoch."""
    return float(calendar.timegm(time.strptime(stored, TIMESTAMP_FORMAT)))


def make_private(path: Path) -> None:
    """The database file (and its WAL and shared-memory files) readable and writable by
    its owner only: created so when new (SQLite gives the -wal and -shm files the mode
    of the database file), narrowed when an older version left it readable by all."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_MODE)
    except FileExistsError:
        for existing in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                if existing.stat().st_mode & 0o077:
                    existing.chmod(PRIVATE_MODE)
    else:
        os.close(handle)


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """``db.atomic()`` that takes the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads first and writes second fails at once with
    "database is locked" when another connection wrote in between (SQLite cannot wait
    there without risking a deadlock); an immediate one waits its turn (busy_timeout).
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        with db.atomic():  # nested: a savepoint, as sqlite-utils' own writes are
            yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def check_version(db: sqlite_utils.Database, migrations: Migrations, label: str) -> None:
    """Refuse a database that a newer cxrxai migrated (it may hold what this version
    would misread or break)."""
    known = {m.name for m in migrations.pending(sqlite_utils.Database(memory=True))}
    newer = sorted({m.name for m in migrations.applied(db)} - known)
    if newer:
        raise CxrxaiError(
            f"{label} was written by a newer version of cxrxai (schema changes {newer}); "
            "upgrade cxrxai to open it, or use another file."
        )


def repair_schema(db: sqlite_utils.Database, migrations: Migrations, label: str) -> list[str]:
    """Check the tables, columns, indexes and triggers against what the migrations make
    (built in memory for comparison). A missing index or trigger is recreated (a dropped
    unique index let a double submit store two rows); a missing table or column cannot
    be, and is refused with a clear message. Returns what was recreated."""
    reference = sqlite_utils.Database(memory=True)
    migrations.apply(reference)
    repaired = []
    for table in reference.table_names():
        if table == Migrations.migrations_table:
            continue
        if table not in db.table_names():
            raise _damaged(label, f"table '{table}' is missing")
        missing = sorted(set(reference[table].columns_dict) - set(db[table].columns_dict))
        if missing:
            raise _damaged(label, f"table '{table}' lacks column(s) {missing}")
    present = {row[0] for row in db.execute("select name from sqlite_master")}
    expected = reference.execute(
        "select name, sql from sqlite_master where type in ('index', 'trigger') and sql is not null"
    ).fetchall()
    for name, sql in expected:
        if name in present:
            continue
        try:
            db.execute(sql)
        except sqlite3.IntegrityError as exc:
            raise _damaged(label, f"'{name}' is missing and its rows now break it ({exc})") from exc
        repaired.append(name)
    return repaired


def _damaged(label: str, what: str) -> CxrxaiError:
    return CxrxaiError(
        f"{label} is damaged or was edited by hand: {what}. Restore it from a backup, or "
        "use another file; nothing was changed."
    )
