"""The Cases page's library side: filters, settings, qualitative picks."""

from __future__ import annotations

import pytest

from cxrxai.evaluation import browse, store


def _row(case: str, method: str, iou: float | None, p: float, correct: int, labels: str) -> dict:
    return {
        "checkpoint_sha256": "x",
        "case_id": case,
        "dataset": "covid-qu-ex",
        "split": "Val",
        "case_labels": labels,
        "method": method,
        "target": labels.split(";")[0],
        "mode": "top-percent",
        "value": 10.0,
        "iou": iou,
        "probability": p,
        "correct": correct,
    }


@pytest.fixture()
def db(tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    rows = [
        _row("a", "gradcam", 0.30, 0.90, 1, "COVID-19"),
        _row("a", "lime", 0.50, 0.90, 1, "COVID-19"),
        _row("b", "gradcam", None, 0.99, 1, "COVID-19;Pneumonia"),
        _row("c", "gradcam", 0.10, 0.40, 0, "COVID-19"),
    ]
    store.write_unit(db, rows, [])
    return db


def test_shortcut_filter(tmp_path):
    db = store.open_results(tmp_path / "s.sqlite")
    rows = [
        _row("in", "lrp", 0.3, 0.9, 1, "COVID-19") | {"lung_relevance": 0.8},
        _row("out", "lrp", 0.3, 0.9, 1, "COVID-19") | {"lung_relevance": 0.3},
        _row("unknown", "lrp", 0.3, 0.9, 1, "COVID-19"),
    ]
    store.write_unit(db, rows, [])
    flagged = browse.filtered_rows(db, browse.Filters(shortcut=True))
    assert [r["case_id"] for r in flagged] == ["out"]
    assert [r["case_id"] for r in browse.filtered_rows(db, browse.Filters(shortcut=False))] == [
        "in"
    ]
    assert len(browse.filtered_rows(db, browse.Filters())) == 3


def test_filters(db):
    every = browse.filtered_rows(db, browse.Filters())
    assert len(every) == 4
    assert {r["case_id"] for r in browse.filtered_rows(db, browse.Filters(methods=("lime",)))} == {
        "a"
    }
    wrong = browse.filtered_rows(db, browse.Filters(correct=False))
    assert [r["case_id"] for r in wrong] == ["c"]
    ranged = browse.filtered_rows(
        db, browse.Filters(iou_min=0.2, iou_max=0.4, include_missing_iou=False)
    )
    assert [(r["case_id"], r["method"]) for r in ranged] == [("a", "gradcam")]
    assert browse.region_settings(db) == [("top-percent", 10.0)]
    assert browse.distinct(db, "method") == ["gradcam", "lime"]
    with pytest.raises(ValueError):
        browse.distinct(db, "iou; drop table runs")


def test_qualitative_picks(db):
    picks = {
        p.kind: p for p in browse.qualitative_picks(browse.filtered_rows(db, browse.Filters()))
    }
    assert picks["best IoU"].case_id == "a" and "lime" in picks["best IoU"].detail
    assert picks["highest probability"].case_id == "b"
    assert picks["multi-label"].case_id == "b" and "Pneumonia" in picks["multi-label"].detail


def test_compared_methods_pairs_every_case_whatever_the_iou_range(db):
    """Only case 'a' has both methods: lime - gradcam = 0.2 on one case. The IoU range
    (0.4-1) would drop gradcam's 0.30 and leave nothing to pair; the comparison ignores it."""
    narrow = browse.Filters(iou_min=0.4, iou_max=1.0, include_missing_iou=False)
    assert {r["method"] for r in browse.filtered_rows(db, narrow)} == {"lime"}
    (row,) = browse.compared_methods(db, narrow)
    assert row["class"] == "COVID-19" and row["methods"] == "gradcam - lime" and row["n"] == 1
    assert row["mean difference (iou)"] == pytest.approx(-0.2)
    only_lime = browse.Filters(methods=("lime",))
    assert browse.compared_methods(db, only_lime) == []  # one method: nothing to compare
    # rows read once with the comparison's filters give the same table (the page's cache)
    read = browse.filtered_rows(db, browse.comparison_filters(narrow))
    assert browse.compared_methods(db, narrow, rows=read) == [row]
    assert browse.comparison_filters(narrow) == browse.Filters()


def test_a_sample_of_rows_is_reproducible_and_keeps_their_order():
    from cxrxai.evaluation.browse import sample_rows

    rows = [{"i": i} for i in range(100)]
    assert sample_rows(rows, 200) is rows
    picked = sample_rows(rows, 10, seed=4)
    assert len(picked) == 10 and picked == sample_rows(rows, 10, seed=4)
    assert [r["i"] for r in picked] == sorted(r["i"] for r in picked)
    assert picked != sample_rows(rows, 10, seed=5)
