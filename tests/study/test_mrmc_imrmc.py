"""Studies made through the study service, exported, and run through the FDA's iMRMC 4.0.3
exactly as exported: every number the app shows equals iMRMC's (statAnalysis.csv,
AUCperReader.csv) to 1e-6. Shapes: fully crossed, missing reads, readers who read too few
cases for iMRMC to count them, hostile study and rater names (exported with real names and
with pseudonyms)."""

from __future__ import annotations

import numpy as np
import pytest
from imrmc_tool import assert_row_matches, number, read_csv, require_imrmc, run_imrmc

from cxrxai.cli import main
from cxrxai.csvout import spreadsheet_safe
from cxrxai.study import analysis, service
from cxrxai.study.mrmc import AIDED, IMRMC_FILE, MODALITY_IDS, UNAIDED, describe, reader_study
from cxrxai.study.service import CaseRef, ReaderProfile

PASSWORD = "admin password"  # the db fixture's (conftest.py)
WITH, WITHOUT = MODALITY_IDS[AIDED], MODALITY_IDS[UNAIDED]
HOSTILE_STUDY = "Pilot run1: chest X-rays N0: 3 NR: 2 NM: 2 BEGIN DATA: -1,x,truth,1"
HOSTILE_RATERS = ["Smith, J", "Ann Lee", "AnnLee", "-1", "R01", "Lee, Ann"]


def _make_study(db, name, raters, n_cases, missing, seed, short=None):
    """``raters`` read ``n_cases`` cases (half with the explained finding); confidences
    drawn so that the explanations help. ``missing``: the share of first reads without a
    confidence (the aided read kept) and, half as often, cases read with none at all.
    ``short``: rater index -> (cases read before stopping, first reads given a confidence)."""
    rng = np.random.default_rng(seed)
    cases = [CaseRef(f"case {i:02d}", "covid-qu-ex", "Val", "COVID-19") for i in range(n_cases)]
    truth = {c.case_id: i % 2 == 0 for i, c in enumerate(cases)}
    explained = {case: "COVID-19" if positive else "Normal" for case, positive in truth.items()}
    code = service.create_study(db, PASSWORD, name, cases, ["gradcam"], first_read=True)
    for k, rater_name in enumerate(raters):
        rater = service.join(db, code, rater_name, ReaderProfile("radiologist", 5 + k, "never"))
        skill = rng.uniform(0.5, 1.5)
        stop, first_reads = (short or {}).get(k, (n_cases, n_cases))
        for done in range(stop):
            if (task := service.next_assignment(db, rater)) is None:
                break
            signal = 1.0 if truth[task.case_id] else -1.0
            before = int(np.clip(50 + 12 * skill * signal + rng.normal(0, 20), 0, 100))
            after = int(np.clip(50 + 20 * skill * signal + rng.normal(0, 18), 0, 100))
            draw = rng.uniform()
            if draw < missing / 2:
                before = after = None  # the case read without any confidence
            elif draw < 1.5 * missing or done >= first_reads:
                before = None  # the first read without a confidence
            service.record_first_read(db, rater, task.id, True, confidence=before)
            scores = {label: {s: 3 for s in service.SCORES} for label in task.shown_as}
            service.submit(db, rater, task.id, scores, True, confidence=after,
                           explained_label=explained[task.case_id])  # fmt: skip
    return service.study_by_code(db, code)


READERS = [f"reader {k}" for k in range(8)]
# reader 4 stops after 4 cases (2 of each truth: left out of both reads), reader 5 gives
# first-read confidences on 2 cases only (left out of the reads without explanations)
TOO_FEW = {4: (4, 4), 5: (24, 2)}


@pytest.mark.parametrize(
    ("shape", "raters", "n_cases", "missing", "real_names", "short"),
    [
        ("fully crossed", READERS, 40, 0.0, False, None),
        ("missing reads", READERS, 40, 0.06, False, None),
        ("many missing reads", READERS[:6], 30, 0.2, False, None),
        ("too few cases for some readers", READERS[:7], 24, 0.0, False, TOO_FEW),
        ("hostile names, real", HOSTILE_RATERS, 24, 0.0, True, None),
        ("hostile names, pseudonyms", HOSTILE_RATERS, 24, 0.1, False, None),
    ],
)
def test_every_number_equals_imrmcs(
    db, tmp_path, capsys, shape, raters, n_cases, missing, real_names, short
):
    require_imrmc()
    name = HOSTILE_STUDY if shape.startswith("hostile") else shape
    study = _make_study(db, name, raters, n_cases, missing, seed=len(shape), short=short)
    out = tmp_path / "export"
    analysis.export(db, study["id"], out, real_names=real_names)
    mine = reader_study(analysis.ratings(db, study["id"], real_names))
    table = run_imrmc(out / IMRMC_FILE, tmp_path / "imrmc")

    assert set(table) == {(WITH, "NO_MOD"), (WITHOUT, "NO_MOD"), (WITH, WITHOUT)}
    # a reader counted in one read only stays in the file; iMRMC then counts its other read
    # (AUC -1, "not counted") in that read's Hillis df, so Hillis is compared on the file
    # without that reader - where iMRMC's analysis of that read is the app's
    partly = {e["read"]: e["reader"] for e in mine["left_out"]}
    for read, key in ((AIDED, "with_explanations"), (UNAIDED, "without_explanations")):
        row = table[(MODALITY_IDS[read], "NO_MOD")]
        assert_row_matches(mine[key], row, hillis=read not in partly)
    assert_row_matches(mine["change"], table[(WITH, WITHOUT)])
    text = (out / IMRMC_FILE).read_text()
    imrmc_of = {r["export_id"]: r["imrmc_id"] for r in read_csv(out / "imrmc_ids.csv")}
    for read, reader in partly.items():
        if not any(line.startswith(f"{imrmc_of[reader]},") for line in text.splitlines()):
            continue  # left out of the file altogether
        cut = tmp_path / f"without_{read.replace(' ', '_')}.imrmc"
        cut.write_text("".join(line for line in text.splitlines(keepends=True)
                               if not line.startswith(f"{imrmc_of[reader]},")))  # fmt: skip
        alone = run_imrmc(cut, tmp_path / f"imrmc_{cut.stem}")[(MODALITY_IDS[read], "NO_MOD")]
        key = "with_explanations" if read == AIDED else "without_explanations"
        assert not np.isnan(number(alone["dfHillis"]))
        assert_row_matches(mine[key], alone)
    row = table[(WITH, WITHOUT)]
    assert number(row["AUCA"]) == pytest.approx(mine["auc_with"], abs=1e-6)
    assert number(row["AUCB"]) == pytest.approx(mine["auc_without"], abs=1e-6)
    # no two readers merged, no field shifted: iMRMC counts what the app counts
    left_out = {e["reader"] for e in mine["left_out"] if e["read"] == AIDED} & {
        e["reader"] for e in mine["left_out"] if e["read"] == UNAIDED
    }
    assert (int(row["NR"]), int(row["N0"]), int(row["N1"])) == (
        len(raters) - len(left_out), mine["n_normal"], mine["n_disease"],
    ) == (len(raters) - len(left_out), n_cases // 2, n_cases // 2)  # fmt: skip
    if short:  # as planned: reader 4 (R05) left out of both reads, reader 5 (R06) of one
        assert {(e["reader"], e["read"]) for e in mine["left_out"]} == {
            ("R05", AIDED),
            ("R05", UNAIDED),
            ("R06", UNAIDED),
        } and len(left_out) == 1
    else:
        assert mine["left_out"] == []
    assert mine["fully_crossed"] == (missing == 0 and not short)
    assert mine["fully_crossed"] == (number(row["dfHillis"]) == number(row["dfHillis"]))

    ids = {r["imrmc_id"]: r["export_id"] for r in read_csv(out / "imrmc_ids.csv")}
    aucs = {spreadsheet_safe(k): v for k, v in mine["reader_aucs"].items()}  # as the CSV has it
    seen = 0
    for reader_row in read_csv(tmp_path / "imrmc" / "AUCperReader.csv"):
        if reader_row["modalityB"] != "NO_MOD":
            continue
        which = "with" if reader_row["modalityA"] == WITH else "without"
        got = aucs[ids[reader_row["readerID"]]][which]
        if int(reader_row["N0"]) == 0:  # iMRMC's "not counted": AUC -1, no cases
            assert np.isnan(got) and number(reader_row["AUCA"]) == -1
        else:
            assert got == pytest.approx(number(reader_row["AUCA"]), abs=1e-6)
        seen += 1
    assert seen == 2 * (len(raters) - len(left_out))
    capsys.readouterr()  # the CLI prints the same numbers as the app
    assert (
        main(["study", "analyse", "--code", study["code"], "--db", str(tmp_path / "study.sqlite")])
        == 0
    )
    assert describe(mine) in capsys.readouterr().out
    header, data = (out / IMRMC_FILE).read_text().split("BEGIN DATA:")
    for token in ("N0:", "N1:", "NR:", "NM:"):
        assert token not in header
    for reader in left_out:  # named in the header, not in the data
        assert f"Left out - {imrmc_of[reader]} " in header
        assert f"\n{imrmc_of[reader]}," not in data
