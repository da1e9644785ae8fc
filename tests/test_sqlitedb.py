"""The SQLite helpers both databases use: timestamps, private files, immediate write
transactions, refusing a newer schema, repairing a dropped index."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time

import pytest
import sqlite_utils
from sqlite_utils.migrations import Migrations

from cxrxai.errors import CxrxaiError
from cxrxai.sqlitedb import (
    check_version,
    epoch_seconds,
    make_private,
    repair_schema,
    timestamp,
    write_transaction,
)


def test_timestamps_are_utc_to_the_second():
    assert timestamp(0) == "1970-01-01 00:00:00"
    assert timestamp(1_796_342_400.9) == "2026-12-04 00:00:00"  # not rounded up
    assert epoch_seconds("2026-12-04 00:00:00") == 1_796_342_400.0
    now = time.time()
    assert abs(epoch_seconds(timestamp()) - now) < 2


def test_database_files_are_private(tmp_path):
    new = tmp_path / "new.sqlite"
    make_private(new)
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    old = tmp_path / "old.sqlite"
    for path in (old, tmp_path / "old.sqlite-wal"):
        path.write_bytes(b"")
        path.chmod(0o644)  # as an older version left them
    make_private(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "old.sqlite-wal").stat().st_mode) == 0o600


def _migrations(*names: str) -> Migrations:
    migrations = Migrations("test")
    for name in names:

        def step(db, name=name):
            if name == "m001":
                db["items"].create({"id": int, "value": str}, pk="id")
                db["items"].create_index(["value"], unique=True)
            else:
                db["items"].add_column(name, str)

        migrations(name=name)(step)
    return migrations


def test_write_transaction_rolls_back_on_error_and_nests(tmp_path):
    db = sqlite_utils.Database(tmp_path / "t.sqlite")
    _migrations("m001").apply(db)
    with pytest.raises(RuntimeError):
        with write_transaction(db):
            db["items"].insert({"id": 1, "value": "a"})
            raise RuntimeError("mid-write")
    assert db["items"].count == 0 and not db.conn.in_transaction
    with write_transaction(db):
        db["items"].insert({"id": 1, "value": "a"})
        with write_transaction(db):  # nested: a savepoint of the outer one
            db["items"].insert({"id": 2, "value": "b"})
    assert db["items"].count == 2


def test_write_transaction_waits_for_another_writer(tmp_path):
    """BEGIN IMMEDIATE: the second writer waits for the first (busy timeout) instead of
    failing with 'database is locked' after it has read."""
    path = tmp_path / "t.sqlite"
    first = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False))
    _migrations("m001").apply(first)
    second = sqlite_utils.Database(sqlite3.connect(path, timeout=10, check_same_thread=False))
    released = threading.Event()

    def hold_the_lock():
        with write_transaction(first):
            first["items"].insert({"id": 1, "value": "first"})
            released.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    time.sleep(0.2)
    threading.Timer(0.5, released.set).start()
    with write_transaction(second):  # waits about 0.3 s, then writes
        count = second["items"].count
        second["items"].insert({"id": 2, "value": "second"})
    holder.join()
    assert count == 1 and second["items"].count == 2


def test_a_schema_from_a_newer_version_is_refused(tmp_path):
    db = sqlite_utils.Database(tmp_path / "t.sqlite")
    _migrations("m001", "m002_newer").apply(db)
    check_version(db, _migrations("m001", "m002_newer"), "Test database")
    with pytest.raises(CxrxaiError, match=r"newer version of cxrxai.*m002_newer"):
        check_version(db, _migrations("m001"), "Test database")


def test_a_dropped_index_is_recreated_a_dropped_column_refused(tmp_path):
    migrations = _migrations("m001", "m002")
    db = sqlite_utils.Database(tmp_path / "t.sqlite")
    migrations.apply(db)
    assert repair_schema(db, migrations, "Test database") == []
    (index,) = [i.name for i in db["items"].indexes]
    db.execute(f"drop index [{index}]")
    assert repair_schema(db, migrations, "Test database") == [index]
    db["items"].insert({"id": 1, "value": "a"})
    with pytest.raises(sqlite3.IntegrityError):
        db["items"].insert({"id": 2, "value": "a"})  # unique again
    db["items"].transform(drop={"m002"})
    with pytest.raises(CxrxaiError, match=r"lacks column\(s\) \['m002'\]"):
        repair_schema(db, migrations, "Test database")
