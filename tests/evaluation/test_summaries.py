"""Summaries kept in the results database: equal to what they summarise, recomputed when
rows change (through the store or around it), never shown when forged, and written by
``merge-results``."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlite_utils

from cxrxai.cli import main
from cxrxai.evaluation import browse, store, summaries
from cxrxai.evaluation.report import iou_versus_p


def _rows(cases: range, method: str, offset: float = 0.0) -> list[dict]:
    return [
        {
            "checkpoint_sha256": "x",
            "case_id": f"c{c}",
            "dataset": "covid-qu-ex",
            "split": "Val",
            "case_labels": "COVID-19" if c % 2 else "Normal",
            "method": method,
            "target": "COVID-19" if c % 2 else "Normal",
            "mode": "top-percent",
            "value": p,
            "iou": (c % 7) / 10 + offset + p / 100,
            "probability": 0.5,
            "correct": c % 3 != 0,
        }
        for c in cases
        for p in (5.0, 10.0)
    ]


@pytest.fixture()
def db(tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    store.write_unit(db, _rows(range(30), "gradcam"), [])
    store.write_unit(db, _rows(range(30), "lrp", offset=0.05), [])
    return db


def _stored(db) -> dict[str, str]:
    return {r["key"]: r["version"] for r in db[store.SUMMARIES].rows}


def test_each_summary_equals_what_it_summarises_and_is_kept(db, monkeypatch):
    assert summaries.overview(db) == (
        store.stale_rows(db), browse.region_settings(db), browse.distinct(db, "target"),
        browse.distinct(db, "method"),
    )  # fmt: skip
    assert summaries.iou_curves(db) == iou_versus_p(db)
    direct = browse.compared_methods(db, browse.Filters("top-percent", 10.0), "iou")
    assert summaries.comparison(db, "top-percent", 10.0, "iou") == direct
    assert set(_stored(db)) == {"overview", "iou_versus_p", "compare:top-percent:10.0:iou"}
    # kept: read back without computing again
    monkeypatch.setattr(summaries, "iou_versus_p", lambda _db: pytest.fail("recomputed"))
    assert summaries.iou_curves(db) == iou_versus_p(db)


def test_a_write_through_the_store_or_around_it_is_seen(db):
    before = summaries.iou_curves(db)
    store.write_unit(db, _rows(range(5), "gradcam", offset=0.3), [])  # values replaced in place
    after = summaries.iou_curves(db)
    assert after == iou_versus_p(db) and after != before
    db[store.LOCALISATION].insert(_rows(range(40, 41), "occlusion")[0])  # not via the store
    assert "occlusion" in summaries.overview(db)[3]


@pytest.mark.parametrize(
    "forged",
    ['[1, [["top-percent", "10"]], ["<script>"], []]', "not json", '{"a": 1}', "[]"],
    ids=["wrong types", "not JSON", "an object", "too short"],
)
def test_a_forged_summary_is_recomputed_not_shown(db, forged):
    truth = summaries.overview(db)
    db.execute(
        f"update {store.SUMMARIES} set value = ? where key = 'overview'", [forged]
    ).connection.commit()
    assert summaries.overview(db) == truth
    assert json.loads(db[store.SUMMARIES].get("overview")["value"])[2] == truth[2]


def test_a_read_only_database_is_summarised_without_keeping(db, tmp_path):
    db.conn.close()
    readonly = sqlite_utils.Database(
        sqlite3.connect(f"file:{tmp_path / 'r.sqlite'}?mode=ro", uri=True)
    )
    assert summaries.iou_curves(readonly) == iou_versus_p(readonly)
    assert readonly[store.SUMMARIES].count == 0


def test_merge_results_refreshes_the_first_views_summaries(tmp_path, capsys):
    shards = []
    for k, method in enumerate(("gradcam", "lrp")):
        shard = store.open_results(tmp_path / f"shard{k}.sqlite")
        store.write_unit(shard, _rows(range(12), method, offset=0.05 * k), [])
        shards.append(str(tmp_path / f"shard{k}.sqlite"))
    out = tmp_path / "all.sqlite"
    assert main(["merge-results", str(out), *shards]) == 0
    merged = store.open_results(out)
    current = summaries.state(merged)
    assert _stored(merged) == {
        "overview": current, "iou_versus_p": current, "compare:top-percent:10.0:iou": current,
        "frame:top-percent:10.0": current,
    }  # fmt: skip
    assert summaries.comparison(merged, "top-percent", 10.0, "iou") == browse.compared_methods(
        merged, browse.Filters(), "iou"
    )


def test_the_first_views_rows_are_kept_as_arrays_equal_to_the_sql(db, monkeypatch):
    """The default setting's frame: kept (no pickle), read back equal to the rows SQL gives,
    types included (int stays int, NULL stays None), and recomputed after a write."""
    direct = browse.setting_frame(db, *summaries.DEFAULT_SETTING)
    kept = summaries.setting_frame(db, *summaries.DEFAULT_SETTING)
    assert kept.records() == direct.records()
    assert f"frame:top-percent:{10.0!r}" in _stored(db)
    monkeypatch.setattr(browse, "setting_frame", lambda *a, **k: pytest.fail("read again"))
    again = summaries.setting_frame(db, *summaries.DEFAULT_SETTING)
    assert again.records() == direct.records()
    assert [type(r["correct"]) for r in again.records()[:3]] == [int, int, int]
    assert {r["dice"] for r in again.records()} == {None}
    monkeypatch.undo()
    store.write_unit(db, _rows(range(3), "gradcam", offset=0.2), [])
    changed = summaries.setting_frame(db, *summaries.DEFAULT_SETTING)
    assert changed.records() == browse.setting_frame(db, *summaries.DEFAULT_SETTING).records()
    assert changed.records() != direct.records()
    # another setting is read from the rows, not kept
    assert len(summaries.setting_frame(db, "top-percent", 5.0)) == 60
    assert "frame:top-percent:5.0" not in _stored(db)


def _forged_npz(kind: str) -> bytes:
    import io
    import zipfile

    import numpy as np

    buffer = io.BytesIO()
    if kind == "huge":  # an array header declaring 10^12 float64 values in a few bytes
        header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
        member = io.BytesIO()
        np.lib.format.write_array_header_1_0(member, header)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("c0.npy", member.getvalue() + b"\0" * 64)
            archive.writestr("header.npy", member.getvalue())
    elif kind == "rows it does not hold":  # a header declaring 10^12 rows of one column
        meta = json.dumps({"names": ["case_id"], "kinds": ["text"], "rows": 10**12})
        np.savez(buffer, header=np.array(meta), c0=np.array([0], np.int32), u0=np.array(["a"]))
    elif kind == "codes out of range":
        meta = json.dumps({"names": ["case_id"], "kinds": ["text"], "rows": 2})
        np.savez(buffer, header=np.array(meta), c0=np.array([0, 7], np.int32), u0=np.array(["a"]))
    else:
        buffer.write(b"PK\x03\x04 not a zip at all")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "kind", ["huge", "rows it does not hold", "codes out of range", "not a zip"]
)
def test_a_forged_frame_is_recomputed_without_allocating_what_it_declares(db, kind):
    import tracemalloc

    truth = summaries.setting_frame(db, *summaries.DEFAULT_SETTING).records()
    key = f"frame:top-percent:{10.0!r}"
    db.execute(
        f"update {store.SUMMARIES} set value = ? where key = ?", [_forged_npz(kind), key]
    ).connection.commit()
    tracemalloc.start()
    try:
        assert summaries.setting_frame(db, *summaries.DEFAULT_SETTING).records() == truth
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20
