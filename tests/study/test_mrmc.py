"""MRMC: reader profiles, confidence scores, the iMRMC input file and the reader-averaged
AUC without vs with explanations, on a small study made here (test data)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrxai.errors import CxrxaiError
from cxrxai.study import analysis, service
from cxrxai.study.mrmc import (
    IMRMC_FILE,
    MODALITY_IDS,
    UNAIDED,
    auc,
    describe,
    header_text,
    imrmc_text,
    reader_study,
    safe_ids,
)
from cxrxai.study.service import CaseRef, ReaderProfile, StudyError

PASSWORD = "admin password"  # the db fixture's (conftest.py)


def _rate_all(db, code, name, before, after, explained):
    """One rater: first read and rating of every case with these confidences."""
    rater = service.join(db, code, name, ReaderProfile("radiologist", 10, "regularly"))
    while (task := service.next_assignment(db, rater)) is not None:
        service.record_first_read(db, rater, task.id, True, confidence=before[task.case_id])
        scores = {label: {s: 3 for s in service.SCORES} for label in task.shown_as}
        service.submit(
            db, rater, task.id, scores, True, confidence=after[task.case_id],
            explained_label=explained[task.case_id],
        )  # fmt: skip
    return rater


@pytest.fixture()
def study(db):
    """Six cases, three where the explained finding is the reference label (truth 1; iMRMC
    counts a reader's reads from 3 cases of each truth): the first read ranks them partly
    wrong, the explanations help."""
    cases = [CaseRef(f"c{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(6)]
    code = service.create_study(db, PASSWORD, "mrmc", cases, ["gradcam"], first_read=True)
    explained = {f"c{i}": "COVID-19" if i < 3 else "Normal" for i in range(6)}
    _rate_all(db, code, "A", {"c0": 60, "c1": 20, "c2": 50, "c3": 40, "c4": 10, "c5": 30},
              {"c0": 90, "c1": 70, "c2": 80, "c3": 30, "c4": 10, "c5": 20}, explained)  # fmt: skip
    _rate_all(db, code, "B", {f"c{i}": 50 for i in range(6)},
              {"c0": 80, "c1": 60, "c2": 70, "c3": 60, "c4": 20, "c5": 30}, explained)  # fmt: skip
    return db, service.study_by_code(db, code)


def test_imrmc_file_format(study):
    db, info = study
    rows = analysis.ratings(db, info["id"])
    text = imrmc_text(rows, info["name"])
    header, data = text.split("BEGIN DATA:\n")
    assert "confidence (0-100)" in header
    lines = data.strip().splitlines()
    without, with_ = MODALITY_IDS[UNAIDED], "with_explanations"
    assert f"R01,c0,{without},60" in lines and f"R01,c0,{with_},90" in lines
    assert [line for line in lines if line.startswith("-1,")] == [
        f"-1,c{i},truth,{int(i < 3)}" for i in range(6)
    ]
    assert len(lines) == 2 * 6 * 2 + 6  # readers x cases x modalities + truths
    assert all(len(line.split(",")) == 4 for line in lines)


def test_reader_averaged_auc(study):
    db, info = study
    result = reader_study(analysis.ratings(db, info["id"]))
    # A: before 60,20,50 | 40,10,30 -> 7 of 9 pairs; after 90,70,80 | 30,10,20 -> 1.0
    # B: before all 50 -> 0.5;  after 80,60,70 | 60,20,30 -> 8.5 of 9 (one tie)
    assert result["auc_without"] == pytest.approx((7 / 9 + 0.5) / 2)
    assert result["auc_with"] == pytest.approx((1.0 + 8.5 / 9) / 2)
    assert result["difference"] == pytest.approx((0.5 + 1.5 / 9) / 2)
    assert result["reader_aucs"]["R01"] == {"with": 1.0, "without": pytest.approx(7 / 9)}
    assert result["n_readers"] == 2 and result["n_cases"] == 6 and result["fully_crossed"]
    # 2 readers x 4 cases: the U-statistic variance of the difference comes out negative
    # (it is unbiased, not positive), so there is no CI - as in iMRMC
    assert result["change"]["variance"] < 0 and np.isnan(result["change"]["ci_bdg"][0])
    assert "no CI or p-value" in describe(result)


def test_reader_study_without_both_truths_says_why(db):
    """NaN quietly, with the reason (no 'Mean of empty slice' warning)."""
    import warnings

    cases = [CaseRef(f"c{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(3)]
    code = service.create_study(db, PASSWORD, "one truth", cases, ["gradcam"], first_read=True)
    explained = {c.case_id: "COVID-19" for c in cases}
    for name in ("A", "B"):
        _rate_all(db, code, name, {c.case_id: 50 for c in cases}, {c.case_id: 60 for c in cases},
                  explained)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = reader_study(analysis.ratings(db, service.study_by_code(db, code)["id"]))
    assert np.isnan(result["difference"]) and "0 without" in result["reason"]
    assert "not computed" in describe(result)


def test_ids_never_merge_shift_or_pose_as_truth():
    names = ["Ann Lee", "AnnLee", "Smith, J", "-1", "R01", "  ", "Ann\u200bLee", "AnnLee_2"]
    ids = safe_ids(names)
    assert len(set(ids.values())) == len(names)  # no two readers merge
    for name, given in ids.items():
        assert given and given == "".join(given.split()) and "," not in given, (name, given)
        assert given != "-1"
    assert ids["R01"] == "R01" and ids["AnnLee"] == "AnnLee"  # ids that were safe stay
    for hostile in ("Pilot run1: chest X-rays", "N0: 3 NR: 2 NM: 2", "x\nBEGIN DATA:\n-1,a,b,1"):
        text = header_text(hostile)
        assert ":" not in text and "\n" not in text


def test_auc_by_ranks_is_sklearns():
    rng = np.random.default_rng(0)
    truths = rng.integers(0, 2, 50)
    scores = rng.integers(0, 10, 50)  # many ties
    assert auc(list(truths), list(scores)) == pytest.approx(roc_auc_score(truths, scores))


def test_profile_and_confidence_are_checked_and_exported(study, tmp_path):
    db, info = study
    with pytest.raises(StudyError, match="Choose your role"):
        service.join(db, info["code"], "C", ReaderProfile("wizard", 3, "never"))
    with pytest.raises(StudyError, match="Years of experience"):
        service.join(db, info["code"], "C", ReaderProfile("resident", 99, "never"))
    with pytest.raises(StudyError, match="Prior use of AI"):
        service.join(db, info["code"], "C", ReaderProfile("resident", 3, "daily"))
    for bad in (101, -1, 12.5, "50", True):
        with pytest.raises(StudyError, match="Give your confidence"):
            service.checked_confidence(bad, required=True)
    with pytest.raises(StudyError, match="Give your confidence"):
        service.checked_confidence(None, required=True)
    paths = analysis.export(db, info["id"], tmp_path / "out")
    names = [p.name for p in paths]
    assert IMRMC_FILE in names and "imrmc_ids.csv" in names
    ratings = (tmp_path / "out" / "ratings.csv").read_text()
    header = ratings.splitlines()[0].split(",")
    assert {"role", "years_experience", "ai_experience", "confidence_before", "confidence"} <= set(
        header
    )
    assert ",radiologist,10,regularly," in ratings


def test_model_correctness_stratified_pick_and_trust_auc(db):
    """G4: cases carry whether the model was right; a pick holds a chosen share of its
    errors; trust's AUC for right vs wrong is reported per method."""
    from cxrxai.study.selection import largest_pick, stratified

    refs = [
        CaseRef(f"c{i}", "d", "Val", "COVID-19", "COVID-19" if i < 6 else "Normal")
        for i in range(8)
    ]  # the model is right on c0-c5, wrong on c6-c7
    assert [r.model_correct for r in refs] == [True] * 6 + [False] * 2
    pick = stratified(refs, 4, 0.5, seed=1)
    assert len(pick) == 4 and sum(not r.model_correct for r in pick) == 2
    with pytest.raises(CxrxaiError, match="hold 2 wrong and 6 right"):
        stratified(refs, 8, 0.5)
    assert len(largest_pick(refs, 0.5)) == 4 and len(largest_pick(refs, 0.25)) == 8
    code = service.create_study(db, PASSWORD, "g4", refs, ["gradcam"])
    stored = {r["case_id"]: r["model_correct"] for r in db["study_cases"].rows}
    assert stored["c0"] == 1 and stored["c7"] == 0
    rater = service.join(db, code, "A")
    while (task := service.next_assignment(db, rater)) is not None:
        trust = 5 if task.case_id in ("c0", "c1", "c2", "c3", "c4", "c5") else 2
        scores = {label: {s: trust for s in service.SCORES} for label in task.shown_as}
        service.submit(db, rater, task.id, scores, True)
    rows = analysis.ratings(db, service.study_by_code(db, code)["id"])
    (entry,) = analysis.informative_plausibility(rows)
    assert (entry["n right"], entry["n wrong"]) == (6, 2)
    assert entry["trust right"] == 5 and entry["trust wrong"] == 2
    assert entry["trust AUC"] == 1.0  # trust told every right decision from every wrong one
