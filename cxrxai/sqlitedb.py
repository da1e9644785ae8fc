"""SQLite helpers shared by the results and study databases."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

PRIVATE_MODE = 0o600


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
