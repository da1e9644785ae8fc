"""Sham controls: panels that are no explanation of the decision, blinded among the real
ones, named in the exports, compared with the real ones in the analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrxai.errors import CxrxaiError
from cxrxai.study import service
from cxrxai.study.sham import sham_comparison, sham_target, split_sham

PASSWORD = "admin password"  # the db fixture's (conftest.py)


def _cases(n: int) -> list[service.CaseRef]:
    return [service.CaseRef(f"case-{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(n)]


def test_names_and_the_sham_class():
    assert split_sham("sham:gradcam(layer=blocks.5)") == ("gradcam(layer=blocks.5)", True)
    assert split_sham("lrp") == ("lrp", False)
    probabilities = np.array([0.7, 0.05, 0.25])
    assert sham_target(["COVID-19", "Non-COVID", "Normal"], probabilities, "COVID-19") == 2
    assert sham_target(["COVID-19", "Non-COVID", "Normal"], probabilities, "Normal") == 0
    with pytest.raises(CxrxaiError, match="two labels"):
        sham_target(["lungs"], [1.0], "lungs")


def test_shams_are_blinded_counterbalanced_and_named_in_the_rows(db):
    with pytest.raises(service.StudyError, match="blinded study"):
        service.create_study(db, PASSWORD, "x", _cases(2), ["gradcam"], blinded=False,
                             shams=["gradcam"])  # fmt: skip
    with pytest.raises(service.StudyError, match="study's own methods"):
        service.create_study(db, PASSWORD, "x", _cases(2), ["gradcam"], shams=["lrp"])
    code = service.create_study(db, PASSWORD, "s", _cases(3), ["gradcam", "lrp"],
                                shams=["gradcam"])  # fmt: skip
    study = service.study_by_code(db, code)
    assert study["methods"] == ["gradcam", "lrp", "sham:gradcam"]
    positions = []
    for name in ("Dr A", "Dr B", "Dr C"):
        rater = service.join(db, code, name)
        while (task := service.next_assignment(db, rater)) is not None:
            assert task.shown_as == ["A", "B", "C"] and "sham:gradcam" in task.methods
            positions.append(task.methods.index("sham:gradcam"))
            scores = {label: dict.fromkeys(service.SCORES, 4) for label in task.shown_as}
            scores[task.shown_as[task.methods.index("sham:gradcam")]]["trust"] = 2
            service.submit(db, rater, task.id, scores, True)
    assert set(positions) == {0, 1, 2}  # the sham is not always in the same place
    rows = list(db["ratings"].rows)
    assert sum(r["method"] == "sham:gradcam" for r in rows) == 9
    (entry,) = sham_comparison(rows)
    assert entry["method"] == "gradcam" and entry["trust real"] == 4.0
    assert entry["trust sham"] == 2.0 and entry["difference"] == 2.0
    assert entry["difference CI"] == [2.0, 2.0] and entry["n sham"] == 9


def test_no_sham_no_comparison():
    rows = [{"method": "gradcam", "trust": 4}, {"method": "lrp", "trust": 3}]
    assert sham_comparison(rows) == []
    assert json.dumps(sham_comparison(rows)) == "[]"


def test_a_panel_shows_the_same_map_on_the_page_and_in_the_preparation():
    """panel_map is the one rule: a real panel explains the case's explained label, a
    variant keeps its settings, a sham explains another class."""
    from cxrxai.study.prepare import panel_map

    labels, probabilities = ["COVID-19", "Non-COVID", "Normal"], [0.7, 0.2, 0.1]
    real = panel_map("gradcam(layer=blocks.6)", labels, probabilities, "COVID-19")
    assert (real.method, real.params, real.target) == ("gradcam", {"layer": "blocks.6"}, 0)
    sham = panel_map("sham:gradcam", labels, probabilities, "COVID-19")
    assert sham.method == "gradcam" and sham.target != 0
    assert panel_map("lrp", labels, probabilities, "not a label").target == 0
