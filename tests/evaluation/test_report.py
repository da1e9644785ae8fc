"""Reports: bootstrap tables from hand-made rows, figures, the CLI end to end."""

from __future__ import annotations

import pytest

from cxrxai.cli import main
from cxrxai.evaluation import report, store


def _row(case: str, method: str, p: float, iou: float | None) -> dict:
    return {
        "checkpoint_sha256": "x",
        "case_id": case,
        "method": method,
        "target": "COVID-19",
        "mode": "top-percent",
        "value": p,
        "iou": iou,
        "dice": None if iou is None else 2 * iou / (1 + iou),
        "correct": 1,
    }


@pytest.fixture()
def db(tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    rows = [
        _row(f"c{i}", m, p, v)
        for i, v in enumerate([0.2, 0.4, None])
        for m in ("a", "b")
        for p in (5.0, 10.0)
    ]
    store.write_unit(db, rows, [])
    return db


def test_table_means_skip_missing_values(db):
    cells = report.method_class_table(db, "top-percent", 10.0, metrics=("iou", "dice"))
    iou_a = next(c for c in cells if c.method == "a" and c.metric == "iou").estimate
    assert iou_a.mean == pytest.approx(0.3) and iou_a.n == 2 and iou_a.n_missing == 1
    table = report.markdown_table(cells)
    assert "| a | COVID-19 | 2 | 0.300 [" in table and "IoU (↑)" in table


def test_n_counts_values_not_cases(tmp_path):
    """A negative control has a pointing-game hit but no IoU: n is IoU's count (2, not
    3), and the hit cell says its own (3)."""
    db = store.open_results(tmp_path / "n.sqlite")
    rows = [_row(f"c{i}", "a", 10.0, v) | {"hit": 1.0} for i, v in enumerate([0.2, 0.4, None])]
    store.write_unit(db, rows, [])
    table = report.markdown_table(report.method_class_table(db, metrics=("iou", "hit")))
    assert "| a | COVID-19 | 2 | 0.300 [" in table and "1.000 [1.000, 1.000] (n=3) |" in table


def test_curves_and_report_files(db, tmp_path):
    curves = report.iou_versus_p(db)
    assert [p for p, _ in curves[("a", "COVID-19")]] == [5.0, 10.0]
    # a class whose maps have no IoU (negative controls) gets no curve, nor a legend entry
    store.write_unit(db, [_row("n0", "a", 10.0, None) | {"target": "Normal"}], [])
    assert ("a", "Normal") not in report.iou_versus_p(db)
    legend = {trace.name for trace in report.iou_curve_figure(report.iou_versus_p(db)).data}
    assert legend == {"a · COVID-19", "b · COVID-19"}
    path = report.write_report(db, tmp_path / "out")
    assert (tmp_path / "out" / "iou_vs_p.png").stat().st_size > 1000
    assert (tmp_path / "out" / "iou_vs_p.html").is_file()
    text = path.read_text()
    assert "## IoU versus p" in text
    # a and b scored the same on both cases with an IoU: paired, no difference shown
    assert "| COVID-19 | a - b | 2 | 0.000 [0.000, 0.000] | n/a | n/a | no difference shown |" in (
        text
    )


def test_cli_evaluate_then_report(covid_root, tmp_path, capsys, monkeypatch):
    """Without --db both commands use $CXRXAI_RESULTS, the file the Cases page opens."""
    db_path = tmp_path / "e.sqlite"
    monkeypatch.setenv("CXRXAI_RESULTS", str(db_path))
    args = [
        "evaluate",
        "--split",
        str(covid_root / "Val"),
        "--classes",
        "COVID-19",
        "--limit",
        "1",
        "--methods",
        "gradcam",
        "--no-cache",
        "--csv",
        str(tmp_path / "e.csv"),
    ]
    assert main(args) == 0
    assert "1 case x method units computed" in capsys.readouterr().out
    assert main(args) == 0  # resumed: nothing recomputed
    assert "0 case x method units computed, 1 already" in capsys.readouterr().out
    # another CAM layer is a variant of its own, scored beside the default
    assert main([*args, "--param", "gradcam.layer=blocks.5"]) == 0
    assert "1 case x method units computed, 0 already" in capsys.readouterr().out
    assert main(["report", "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "| gradcam | COVID-19 |" in text and "| gradcam(layer=blocks.5) | COVID-19 |" in text
    assert "## Where the relevance lies (shortcut flag)" in text
    assert "| gradcam | COVID-19 | 1 | 0 |" in text  # the dataset's lung mask, not predicted
    runs = list(store.open_results(db_path)["runs"].rows)
    assert "lungs-unet-lite0-covidqu" in runs[-1]["settings"]
    assert runs[-1]["methods"] == "gradcam(layer=blocks.5)"
    assert '"layer": "blocks.5"' in runs[-1]["settings"]


def test_shortcut_table_counts_flagged_maps_per_method_and_class(tmp_path):
    from cxrxai.evaluation.report import shortcut_markdown, shortcut_table

    db = store.open_results(tmp_path / "s.sqlite")
    shares = [(0.9, "reference"), (0.2, "predicted"), (0.4, "predicted"), (None, None)]
    rows = [
        _row(f"c{i}", "lrp", 10.0, 0.1)
        | {"lung_relevance": v, "border_relevance": 0.1, "lung_source": src}
        for i, (v, src) in enumerate(shares)
    ]
    store.write_unit(db, rows, [])
    (row,) = shortcut_table(db)
    assert (row.maps, row.predicted_lungs, row.flagged) == (3, 2, 2)
    assert row.lung_share.mean == pytest.approx(0.5) and row.lung_share.n == 3
    assert "| lrp | COVID-19 | 3 | 2 | 0.50 [" in shortcut_markdown([row])
    assert "| 67% (2) |" in shortcut_markdown([row])


def test_cli_clear_errors(tmp_path, capsys):
    assert main(["report", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "run 'evaluate' first" in capsys.readouterr().err
    assert main(["evaluate", "--methods", "gradcam,nope", "--db", str(tmp_path / "x.sqlite")]) == 2
    assert "nope" in capsys.readouterr().err


def test_study1_layout(tmp_path):
    db = store.open_results(tmp_path / "s.sqlite")
    rows = []
    for i, (lime, cam) in enumerate([(0.4, 0.1), (0.2, 0.3)]):
        for method, mode, value, iou in (
            ("lime", "top-superpixels", 5.0, lime),
            ("gradcam", "otsu", 0.0, cam),
            ("gradcam", "top-percent", 10.0, 0.9),
        ):
            rows.append(_row(f"c{i}", method, value, iou) | {"mode": mode, "mean_distance": 10.0})
    store.write_unit(db, rows, [])
    table = report.study1_table(db)
    assert "gradcam (otsu 0)" in table and "lime (top-superpixels 5)" in table
    miou = next(line for line in table.splitlines() if line.startswith("| mIoU"))
    assert "0.200 [" in miou and "0.300 [" in miou  # gradcam Otsu mean, LIME mean
