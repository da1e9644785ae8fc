"""Damaged, edited or newer databases, one catalogue: each is refused with a clear message
naming the file and what is wrong (nothing changed), or repaired where that is safe (a
dropped index or trigger), so that no page shows a raw OperationalError or KeyError."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import store
from cxrxai.study import service
from cxrxai.study.db import connect
from cxrxai.study.service import CaseRef

PASSWORD = "admin password"


def _study(path):
    db = connect(path)
    service.set_admin_password(db, PASSWORD)
    code = service.create_study(
        db, PASSWORD, "pilot", [CaseRef("c0", "d", "Val", "COVID-19")], ["gradcam", "lrp"]
    )
    rater = service.join(db, code, "Ada")
    db.conn.close()
    return code, rater


def _raw(path) -> sqlite_utils.Database:
    return sqlite_utils.Database(sqlite3.connect(path))


REFUSED = {
    "dropped column": (
        lambda db: db["ratings"].transform(drop={"comment"}),
        "table 'ratings' lacks column\\(s\\) \\['comment'\\]",
    ),
    "dropped table": (lambda db: db["assignments"].drop(), "table 'assignments' is missing"),
    "newer version": (
        lambda db: db["_sqlite_migrations"].insert(
            {"migration_set": "cxrxai-study", "name": "m999_future", "applied_at": "2030"}
        ),
        "written by a newer version of cxrxai .*m999_future",
    ),
    "duplicates under a dropped unique index": (
        lambda db: (
            db.execute("drop index idx_studies_code"),
            db.execute("insert into studies (code, name) select code, name from studies"),
        ),
        "'idx_studies_code' is missing and its rows now break it",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_damaged_or_newer_study_database_is_refused(tmp_path, name):
    path = tmp_path / "study.sqlite"
    _study(path)
    damage, message = REFUSED[name]
    raw = _raw(path)
    damage(raw)
    raw.conn.commit()
    raw.conn.close()
    before = path.read_bytes()
    with pytest.raises(CxrxaiError, match=message) as info:
        connect(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before  # nothing changed


def test_a_dropped_unique_index_and_trigger_are_recreated(tmp_path):
    """A double submit stored two rows once the unique index was dropped; the audit log
    became editable once its trigger was. Both come back on opening."""
    path = tmp_path / "study.sqlite"
    _, rater = _study(path)
    raw = _raw(path)
    raw.execute("drop index idx_ratings_assignment_id_method")
    raw.execute("drop trigger audit_no_delete")
    raw.conn.commit()
    raw.conn.close()
    db = connect(path)
    task = service.next_assignment(db, rater)
    scores = {label: {s: 4 for s in service.SCORES} for label in task.shown_as}
    assert service.submit(db, rater, task.id, scores, True) == 2
    assert service.submit(db, rater, task.id, scores, True) == 0  # the double submit
    assert db["ratings"].count == 2
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("delete from audit")


def test_a_damaged_results_database_is_refused_or_repaired(tmp_path):
    path = tmp_path / "results.sqlite"
    store.open_results(path).conn.close()
    raw = _raw(path)
    raw.execute("drop index idx_localisation_method_mode_value")
    raw.conn.commit()
    raw.conn.close()
    store.open_results(path).conn.close()  # recreated
    assert "idx_localisation_method_mode_value" in {
        r[0] for r in _raw(path).execute("select name from sqlite_master").fetchall()
    }
    raw = _raw(path)
    raw["localisation"].transform(drop={"hit"})
    raw.conn.commit()
    raw.conn.close()
    with pytest.raises(CxrxaiError, match="lacks column\\(s\\) \\['hit'\\]"):
        store.open_results(path)
    raw = _raw(path)
    raw["_sqlite_migrations"].insert(
        {"migration_set": "cxrxai-results", "name": "m999_future", "applied_at": "2030"}
    )
    raw.conn.commit()
    raw.conn.close()
    with pytest.raises(CxrxaiError, match="newer version"):
        store.open_results(path)


def test_study_admin_shows_a_message_for_a_damaged_database(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    app_file = Path(__file__).resolve().parents[2] / "app.py"
    path = tmp_path / "study.sqlite"
    _study(path)
    raw = _raw(path)
    raw["raters"].transform(drop={"pseudonym"})
    raw.conn.commit()
    raw.conn.close()
    monkeypatch.setenv("CXRXAI_STUDY_DB", str(path))
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    app = AppTest.from_file(str(app_file), default_timeout=120).run()
    app.switch_page("pages/study_admin.py").run()
    assert not app.exception
    assert "lacks column" in app.error[0].value
