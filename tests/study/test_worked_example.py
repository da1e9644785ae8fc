"""docs/study-example.md stays reproducible: the script builds its study, and the analysis
finds what the scripted readers were made to do."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "study_example.py"


def test_the_worked_example_builds_and_its_analysis_finds_the_scripted_effects(tmp_path):
    build = runpy.run_path(str(SCRIPT))["build"]
    export = build(tmp_path)
    summary = json.loads((export / "summary_by_method.json").read_text())
    (sham,) = summary["real_vs_sham"]
    assert sham["difference CI"][0] > 0  # real maps were trusted more than the sham
    gradcam = next(e for e in summary["informative_plausibility"] if e["method"] == "gradcam")
    assert gradcam["trust right"] > gradcam["trust wrong"]
    assert (
        summary["reader_averaged_auc"]["auc_with"] > summary["reader_averaged_auc"]["auc_without"]
    )
    assert summary["reader_averaged_auc"]["reason"] is None  # 3 + 5 cases: iMRMC counts all
    assert summary["staged_reveal"]["reads"] == 24
    assert len((export / "ratings.csv").read_text().splitlines()) == 1 + 72
    assert len((export / "practice_ratings.csv").read_text().splitlines()) == 1 + 9
