"""The Cases page's library side: filters, settings, qualitative picks."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from cxrxai.evaluation import browse, store
from cxrxai.evaluation.compare import comparison_table, paired_comparisons


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
    # the setting's rows read once give the same table (the page's cache)
    frame = browse.setting_frame(db, narrow.mode, narrow.value)
    assert browse.compared_methods(db, narrow, frame=frame) == [row]
    assert browse.comparison_filters(narrow) == browse.Filters()


def test_a_sample_of_rows_is_reproducible_and_keeps_their_order():
    frame = browse.Frame.from_rows([{"i": i} for i in range(100)])
    assert browse.sample_frame(frame, 200) is frame
    picked = browse.sample_frame(frame, 10, seed=4).column("i").tolist()
    assert (
        len(picked) == 10 and picked == browse.sample_frame(frame, 10, seed=4).column("i").tolist()
    )
    assert picked == sorted(picked)
    assert picked != browse.sample_frame(frame, 10, seed=5).column("i").tolist()


def _sql_rows(db, filters: browse.Filters) -> list[dict]:
    """The filters as SQL, the way the page read its rows before it read them as columns:
    the reference the arrays must agree with."""
    where, params = ["mode = ?", "value = ?"], [filters.mode, filters.value]
    for column, chosen in (("target", filters.classes), ("method", filters.methods)):
        if chosen:
            where.append(f"{column} in ({', '.join('?' * len(chosen))})")
            params += list(chosen)
    if filters.correct is not None:
        where.append("correct = ?")
        params.append(int(filters.correct))
    if filters.shortcut is not None:
        where.append("lung_relevance < ?" if filters.shortcut else "lung_relevance >= ?")
        params.append(0.5)
    iou = "(iou between ? and ?)"
    where.append(f"({iou} or iou is null)" if filters.include_missing_iou else iou)
    params += [filters.iou_min, filters.iou_max]
    return list(db[store.LOCALISATION].rows_where(" and ".join(where), params, order_by="case_id"))


def _many(tmp_path):
    """600 rows: 200 cases x 3 methods, random classes, correctness, IoU, lung shares."""
    rng = random.Random(3)
    db = store.open_results(tmp_path / "many.sqlite")
    rows = []
    for i in range(200):
        labels = rng.choice(["COVID-19", "Normal", "COVID-19;Normal"])
        for method in ("gradcam", "lime", "lrp"):
            iou = rng.choice([None, 0.0, 0.25, 1.0, rng.random(), rng.random()])
            lungs = rng.choice([None, 0.5, rng.random()])
            row = _row(f"case{i:03d}", method, iou, rng.random(), rng.choice([0, 1]), labels)
            row["checkpoint_sha256"] = rng.choice(["x", "w"])  # cases pair within one
            rows.append(row | {"lung_relevance": lungs})
    store.write_unit(db, rows, [])
    return db


def test_filters_on_arrays_equal_the_same_filters_in_sql(tmp_path):
    """600 rows of random classes, methods, correctness, IoU (some NULL, some at the range's
    ends) and lung shares (some NULL): every combination of filters keeps the rows, in the
    order, SQL keeps; and the picks equal those of the dict rows."""
    db = _many(tmp_path)
    frame = browse.setting_frame(db, "top-percent", 10.0, names=None)  # every column
    assert frame.records() == _sql_rows(db, browse.Filters())
    for classes, methods, correct, shortcut, (low, high), missing in itertools.product(
        [(), ("Normal",), ("COVID-19", "Normal")],
        [(), ("lime",), ("gradcam", "lrp")],
        [None, True, False],
        [None, True, False],
        [(0.0, 1.0), (0.25, 0.75)],
        [True, False],
    ):
        filters = browse.Filters(
            "top-percent", 10.0, classes, methods, correct, low, high, missing, shortcut
        )
        expected = _sql_rows(db, filters)
        kept = browse.filter_frame(frame, filters)
        assert kept.records() == expected, filters
        assert browse.qualitative_picks(kept) == _reference_picks(expected), filters


def _reference_picks(rows: list[dict]) -> list[browse.Pick]:
    """The picks as the page computed them over dicts before its rows became arrays."""
    picks = []
    for target in sorted({r["target"] for r in rows}):
        mine = [r for r in rows if r["target"] == target]
        scored = [r for r in mine if r["iou"] is not None]
        if scored:
            best = max(scored, key=lambda r: r["iou"])
            picks.append(
                browse._pick("best IoU", best, f"IoU {best['iou']:.3f} ({best['method']})")
            )
        sure = max(mine, key=lambda r: (r["correct"] or 0, r["probability"] or 0.0))
        picks.append(browse._pick("highest probability", sure, f"p = {sure['probability']:.3f}"))
        multi = next((r for r in mine if ";" in (r["case_labels"] or "")), None)
        if multi is not None:
            picks.append(
                browse._pick("multi-label", multi, multi["case_labels"].replace(";", ", "))
            )
    return picks


def test_comparisons_on_arrays_equal_those_of_the_sql_rows(tmp_path):
    """The page's paired comparison from its arrays (read from SQL, or kept in the
    database and read back) equals :func:`compare.paired_comparisons` of the rows SQL
    keeps, for every class, method, prediction and shortcut filter."""
    db = _many(tmp_path)
    read = browse.setting_frame(db, "top-percent", 10.0)
    kept = browse.Frame.from_bytes(read.to_bytes())
    assert kept._codes  # the codes stored with the frame are used, not recomputed
    for classes, methods, (correct, shortcut) in itertools.product(
        [(), ("Normal",)],
        [(), ("gradcam", "lrp")],
        [(None, None), (False, True), (True, False)],
    ):  # a dozen: SciPy's Wilcoxon on a few dozen pairs can take 0.1 s
        filters = browse.Filters(
            "top-percent", 10.0, classes, methods, correct, 0.2, 0.9, shortcut=shortcut
        )
        expected = comparison_table(
            paired_comparisons(_sql_rows(db, browse.comparison_filters(filters)))
        )
        for frame in (read, kept):
            got = browse.compared_methods(db, filters, frame=frame)
            assert repr(got) == repr(expected), filters  # repr: NaN equals NaN


def test_the_page_s_numbers_equal_the_references_on_a_real_evaluation(covid_root, tmp_path):
    """A real evaluation (COVID-QU-Ex Val, both classes, Grad-CAM and Grad-CAM++ on the
    demo model): the Cases page's comparisons from its arrays - read from SQL and kept in
    the database - equal the dict-loop reference over the SQL rows for each prediction
    filter, and the box plot has Plotly Express's traces."""
    import plotly.express as px

    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.evaluate import evaluate_cases
    from cxrxai.evaluation.figures import box_by_class

    val = load_covid_qu_ex(covid_root / "Val")
    cases = [c for c in val if c.labels == ["COVID-19"]][:4]
    cases += [c for c in val if c.labels != ["COVID-19"]][:3]
    db = store.open_results(tmp_path / "real.sqlite")
    evaluate_cases(
        load_checkpoint(DEMO_CHECKPOINT, device="cpu"), cases, ["gradcam", "gradcam++"], db
    )
    summaries.refresh(db)
    kept = summaries.setting_frame(db, *summaries.DEFAULT_SETTING)
    read = browse.setting_frame(db, *summaries.DEFAULT_SETTING)
    assert kept.records() == read.records() and len(read) >= 8
    for correct in (None, True, False):
        filters = browse.Filters(*summaries.DEFAULT_SETTING, correct=correct)
        expected = comparison_table(
            paired_comparisons(_sql_rows(db, browse.comparison_filters(filters)))
        )
        for frame in (read, kept):
            got = browse.compared_methods(db, filters, frame=frame)
            assert repr(got) == repr(expected), correct
    stored = summaries.comparison(db, *summaries.DEFAULT_SETTING, "iou", kept)
    assert repr(stored) == repr(
        comparison_table(paired_comparisons(_sql_rows(db, browse.Filters())))
    )
    scored = read.take(~np.isnan(read.numbers("iou")))
    ours = box_by_class(scored)
    columns = {c: scored.column(c).tolist() for c in ("target", "iou", "method")}
    theirs = px.box(columns, x="target", y="iou", color="method", points="outliers")
    for mine, reference in zip(ours.data, theirs.data, strict=True):
        assert mine.name == reference.name and list(mine.x) == list(reference.x)
        assert np.array_equal(np.asarray(mine.y, float), np.asarray(reference.y, float))
