"""SQLite helpers shared by the results and study databases."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlite_utils


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
