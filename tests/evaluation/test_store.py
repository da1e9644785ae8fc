"""The results database: schema migrations, rows from an older definition of the metrics,
metrics added after a database was made."""

from __future__ import annotations

import pytest
import sqlite_utils

from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import store
from cxrxai.evaluation.report import write_report
from cxrxai.metrics.registry import METRICS


def _row(case_id: str, method: str = "gradcam", **metrics: float) -> dict:
    return {
        "checkpoint_sha256": "abc",
        "case_id": case_id,
        "dataset": "toy",
        "split": "test",
        "case_labels": "sick",
        "method": method,
        "target": "sick",
        "predicted": "sick",
        "correct": 1,
        "probability": 0.9,
        "mode": "otsu",
        "value": 0.0,
        "unit": "px",
        "n_truth_pixels": 10,
        "n_raters": 1,
        **metrics,
    }


def _database_of_before_migrations(path) -> None:
    """A results file as cxrxai wrote it before the schema was versioned."""
    db = sqlite_utils.Database(path)
    columns = {k: type(v) for k, v in _row("x").items()}
    columns |= {name: float for name in store._INITIAL_METRICS}
    db[store.LOCALISATION].create(columns, pk=store.LOCALISATION_KEY)
    db[store.LOCALISATION].insert(_row("old/1", iou=0.4, hit=1.0))
    db.conn.close()


def test_an_old_database_is_migrated_and_its_rows_recomputed_on_resuming(tmp_path):
    path = tmp_path / "old.sqlite"
    _database_of_before_migrations(path)
    db = store.open_results(path)
    assert "metrics_version" in db[store.LOCALISATION].columns_dict
    assert db[store.LOCALISATION].get(("abc", "old/1", "gradcam", "sick", "otsu", 0.0))[
        "iou"
    ] == pytest.approx(0.4)  # kept
    assert store.stale_rows(db) == 1
    report = write_report(db, tmp_path / "report")
    assert "1 row(s) were computed by an older definition" in report.read_text()
    assert store.done_units(db, "abc") == set()  # computed by the old hit / Otsu: redo
    store.write_unit(db, [_row("old/1", iou=0.5, hit=0.0)], [])
    assert store.stale_rows(db) == 0 and store.done_units(db, "abc") == {("old/1", "gradcam")}
    assert db[store.LOCALISATION].count == 1  # replaced, not duplicated
    applied = {r["name"] for r in db["_sqlite_migrations"].rows}
    assert {"m001_initial", "m002_metrics_version"} <= applied
    store.open_results(path)  # reopening applies nothing twice


def test_the_lungs_column_of_older_databases_is_renamed_lung_source(tmp_path):
    """A database written when the lung fields' source was the column ``lungs`` keeps its
    values under ``lung_source``, and its stored summaries stop holding."""
    path = tmp_path / "r.sqlite"
    db = store.open_results(path)
    store.write_unit(db, [_row("a", iou=0.4) | {"lung_source": "predicted"}], [])
    db.execute("alter table localisation rename column lung_source to lungs")  # as before
    db.execute("delete from _sqlite_migrations where name = 'm005_lung_source_column'")
    db.conn.commit()
    writes = store.writes(db)
    db.conn.close()
    db = store.open_results(path)
    columns = db[store.LOCALISATION].columns_dict
    assert "lung_source" in columns and "lungs" not in columns
    assert [r["lung_source"] for r in db[store.LOCALISATION].rows] == ["predicted"]
    assert store.writes(db) == writes + 1
    store.open_results(path)  # applied once
    assert store.writes(db) == writes + 1


def test_a_metric_added_later_gets_its_column(tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite"
    store.write_unit(store.open_results(path), [_row("a/1", iou=0.3)], [])
    monkeypatch.setitem(METRICS, "new_score", METRICS["iou"])
    db = store.open_results(path)  # was: OperationalError no such column on every write
    store.write_unit(db, [_row("a/2", iou=0.2, new_score=0.7)], [])
    rows = {r["case_id"]: r for r in db[store.LOCALISATION].rows}
    assert rows["a/2"]["new_score"] == pytest.approx(0.7) and rows["a/1"]["new_score"] is None


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not SQLite")
    with pytest.raises(CxrxaiError, match="could not be opened"):
        store.open_results(path)
    assert path.read_text() == "these are my notes, not SQLite"


def test_merge_joins_shards_and_keeps_each_unit_once(tmp_path):
    shards = []
    for k, ids in enumerate((["a", "b"], ["c", "b"])):  # unit b is in both shards
        shard = store.open_results(tmp_path / f"shard{k}.sqlite")
        for case_id in ids:
            store.write_unit(shard, [_row(case_id, iou=0.5)], [])
        store.record_run(shard, "ckpt", "abc", "data", "Val", ["gradcam"], shard=f"{k + 1}/2")
        shards.append(tmp_path / f"shard{k}.sqlite")
    merged = store.open_results(tmp_path / "all.sqlite")
    added = store.merge_results(merged, shards)
    assert added == {"localisation": 3, "faithfulness": 0, "runs": 2}
    assert {r["case_id"] for r in merged[store.LOCALISATION].rows} == {"a", "b", "c"}
    assert store.done_units(merged, "abc") == {("a", "gradcam"), ("b", "gradcam"), ("c", "gradcam")}
    assert set(store.merge_results(merged, shards).values()) == {0}  # again: nothing new
    with pytest.raises(CxrxaiError, match="not found"):
        store.merge_results(merged, [tmp_path / "typo.sqlite"])
    assert not (tmp_path / "typo.sqlite").exists()  # never made by looking for it


def test_merge_refuses_a_file_that_is_not_results_or_itself(tmp_path):
    merged = store.open_results(tmp_path / "all.sqlite")
    bogus = tmp_path / "notes.sqlite"
    bogus.write_bytes(b"not a database at all" * 10)
    with pytest.raises(CxrxaiError, match=r"notes\.sqlite"):
        store.merge_results(merged, [bogus])
    with pytest.raises(CxrxaiError, match="being merged into"):
        store.merge_results(merged, [tmp_path / "all.sqlite"])
    assert merged[store.LOCALISATION].count == 0
