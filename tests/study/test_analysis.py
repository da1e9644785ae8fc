"""Study analysis: agreement statistics against published values, summaries, exports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cxrxai.study import analysis, service
from cxrxai.study.db import connect
from cxrxai.study.service import CaseRef

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; ICC(2,1) = 0.29.
SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]


def _rows(matrix, score="trust"):
    return [
        {"rater": f"J{j}", "case_id": f"t{i}", "method": "m", score: value}
        for i, row in enumerate(matrix)
        for j, value in enumerate(row)
    ]


def test_icc_matches_shrout_and_fleiss():
    assert analysis.icc_2_1(_rows(SHROUT_FLEISS)) == pytest.approx(0.29, abs=0.005)


def test_krippendorff_alpha_extremes():
    agree = _rows([[1, 1, 1], [3, 3, 3], [5, 5, 5], [2, 2, 2]])
    assert analysis.krippendorff_alpha(agree) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = _rows(rng.integers(1, 6, size=(60, 3)).tolist())
    assert abs(analysis.krippendorff_alpha(noise)) < 0.15
    assert math.isnan(analysis.krippendorff_alpha(_rows([[1], [2]])))  # one rater


def test_trust_vs_metric_and_summary():
    rows = [
        {
            "rater": "R1",
            "case_id": f"c{i}",
            "method": "gradcam",
            "trust": t,
            "localisation": t,
            "usefulness": 3,
            "target": "COVID-19",
        }
        for i, t in enumerate([1, 2, 3, 4, 5, 5, 4])
    ]
    iou = {(f"c{i}", "gradcam"): v for i, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.6, 0.5, 0.45])}
    result = analysis.trust_vs_metric(rows, iou)
    assert result["rho"] > 0.9 and result["low"] <= result["rho"] <= result["high"]
    (entry,) = analysis.summary(rows)
    assert entry["n"] == 7 and entry["trust_median"] == 4.0
    assert entry["trust_ci"][0] <= entry["trust_mean"] <= entry["trust_ci"][1]


def test_export_pseudonymous_by_default(tmp_path):
    db = connect(tmp_path / "s.sqlite")
    service.set_admin_password(db, "admin password")
    code = service.create_study(
        db, "admin password", "s", [CaseRef("c0", "d", "Val", "COVID-19")], ["gradcam", "lrp"]
    )
    for name in ("Dr Ada Lovelace", "Dr Bob"):
        rater = service.join(db, code, name)
        task = service.next_assignment(db, rater)
        scores = {label: {s: 4 for s in service.SCORES} for label in task.shown_as}
        service.submit(db, rater, task.id, scores, True, "<i>ok</i>")
    study_id = service.study_by_code(db, code)["id"]
    paths = analysis.export(db, study_id, tmp_path / "out")
    text = "".join(p.read_text() for p in paths)
    assert "Ada" not in text and "R01" in text and "R02" in text
    named = analysis.export(db, study_id, tmp_path / "named", real_names=True)
    assert "Dr Ada Lovelace" in named[0].read_text()
    summary = json.loads((tmp_path / "out" / "summary_by_method.json").read_text())
    assert {e["method"] for e in summary["by_method"]} == {"gradcam", "lrp"}


def test_cli_progress_analyse_export(tmp_path, capsys):
    from cxrxai.cli import main

    path = tmp_path / "s.sqlite"
    db = connect(path)
    service.set_admin_password(db, "admin password")
    cases = [CaseRef(f"c{i}", "d", "Val", "COVID-19") for i in range(2)]
    code = service.create_study(db, "admin password", "s", cases, ["gradcam", "lrp"])
    for name, value in (("A", 4), ("B", 5)):
        rater = service.join(db, code, name)
        while (task := service.next_assignment(db, rater)) is not None:
            scores = {label: {s: value for s in service.SCORES} for label in task.shown_as}
            service.submit(db, rater, task.id, scores, True)
    assert main(["study", "progress", "--code", code, "--db", str(path)]) == 0
    assert "R01: 2/2" in capsys.readouterr().out
    assert main(["study", "analyse", "--code", code, "--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "8 ratings" in out and "method gradcam, n 4, trust mean [95 % CI] 4.50" in out
    assert (
        main(["study", "export", "--code", code, "--db", str(path), "--out", str(tmp_path / "x")])
        == 0
    )
    assert (tmp_path / "x" / "ratings.csv").is_file()
    assert main(["study", "analyse", "--code", "NOPE", "--db", str(path)]) == 2
    assert "No study has this code" in capsys.readouterr().err


def test_cli_create_from_a_dataset_loader(covid_root, tmp_path, monkeypatch, capsys):
    from cxrxai.cli import main

    path = tmp_path / "s.sqlite"
    service.set_admin_password(connect(path), "admin password")
    args = [
        "study",
        "create",
        "--db",
        str(path),
        "--split",
        str(covid_root / "Val"),
        "--classes",
        "COVID-19",
        "--limit",
        "3",
        "--methods",
        "gradcam,lrp",
    ]
    assert main(args) == 2
    assert "CXRXAI_ADMIN_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("CXRXAI_ADMIN_PASSWORD", "admin password")
    assert main(args) == 0
    assert "created with 3 cases" in capsys.readouterr().out
    study = next(connect(path)["studies"].rows)
    assert study["mode"] == "blinded" and json.loads(study["methods"]) == ["gradcam", "lrp"]


def test_decision_changes_counted_by_hand(tmp_path, capsys):
    """Two raters x 2 cases read before and after the explanations: A agreed, then
    disagreed on c0 and kept 'agree' on c1; B disagreed then agreed on c0, kept
    'disagree' on c1. 4 reads: agree before 2/4, after 2/4, changed 2/4 (one each way).
    Panels are rated one row each, but a (rater, case) counts once."""
    from cxrxai.cli import main

    path = tmp_path / "s.sqlite"
    db = connect(path)
    service.set_admin_password(db, "admin password")
    cases = [CaseRef(f"c{i}", "d", "Val", "COVID-19") for i in range(2)]
    code = service.create_study(
        db, "admin password", "s", cases, ["gradcam", "lrp"], first_read=True
    )
    reads = {"A": {"c0": (True, False), "c1": (True, True)},
             "B": {"c0": (False, True), "c1": (False, False)}}  # fmt: skip
    for name, by_case in reads.items():
        rater = service.join(db, code, name)
        while (task := service.next_assignment(db, rater)) is not None:
            before, after = by_case[task.case_id]
            service.record_first_read(db, rater, task.id, before)
            scores = {label: {s: 3 for s in service.SCORES} for label in task.shown_as}
            service.submit(db, rater, task.id, scores, after)
    study_id = service.study_by_code(db, code)["id"]
    rows = analysis.ratings(db, study_id)
    assert len(rows) == 8 and {r["agrees_before_explanations"] for r in rows} == {0, 1}
    changes = analysis.decision_changes(rows)
    assert changes["n"] == 4
    assert changes["agree_before"] == changes["agree_after"] == changes["changed"] == 0.5
    assert changes["to_agree"] == 1 and changes["to_disagree"] == 1
    low, high = changes["changed_ci"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert main(["study", "analyse", "--code", code, "--db", str(path)]) == 0
    assert "changed 50%, 95 % bootstrap CI" in capsys.readouterr().out
    analysis.export(db, study_id, tmp_path / "out")
    assert "agrees_before_explanations" in (tmp_path / "out" / "ratings.csv").read_text()
    summary = json.loads((tmp_path / "out" / "summary_by_method.json").read_text())
    assert summary["decision_changes"]["n"] == 4
    # a study without first reads has nothing to report
    assert (
        analysis.decision_changes([{**r, "agrees_before_explanations": None} for r in rows])["n"]
        == 0
    )
