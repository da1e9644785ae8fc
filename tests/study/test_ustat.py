"""The U-statistic MRMC analysis against iMRMC 4.0.3's own example input and outputs
(../shared/tools/imrmc/example), and its refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from imrmc_tool import TOOL, assert_row_matches, number, parse_imrmc, read_csv, require_imrmc

from cxrxai.study.ustat import analyse


@pytest.fixture(scope="module")
def example():
    require_imrmc()
    scores, truth, readers, modalities = parse_imrmc((TOOL / "example/input.imrmc").read_text())
    return analyse(scores, truth, tuple(readers), tuple(modalities)), TOOL / "example/expected"


def _as_dict(inference) -> dict:
    return {**dataclasses.asdict(inference), "se": inference.se}


def test_every_number_of_imrmcs_example(example):
    result, expected = example
    rows = {(r["modalityA"], r["modalityB"]): r for r in read_csv(expected / "statAnalysis.csv")}
    assert result.modalities == ("testA", "testB") and result.fully_crossed
    assert_row_matches(_as_dict(result.a), rows[("testA", "NO_MOD")])
    assert_row_matches(_as_dict(result.b), rows[("testB", "NO_MOD")])
    assert_row_matches(_as_dict(result.difference), rows[("testA", "testB")])
    # the README's figures, as a reader would check them by eye
    assert result.difference.variance == pytest.approx(4.98950905e-3, abs=1e-11)
    assert result.difference.df_bdg == pytest.approx(7.35006973, abs=1e-8)
    assert result.difference.ci_bdg == pytest.approx((-0.221153679, 0.112903679), abs=1e-9)


def test_mle_variance_and_reader_aucs_of_the_example(example):
    result, expected = example
    mle = {(r["modalityA"], r["modalityB"]): r for r in read_csv(expected / "statAnalysisMLE.csv")}
    assert result.a.variance_mle == pytest.approx(
        number(mle[("testA", "NO_MOD")]["varAUCA"]), abs=1e-9
    )
    assert result.difference.variance_mle == pytest.approx(
        number(mle[("testA", "testB")]["varAUCAminusAUCB"]), abs=1e-9
    )
    for row in read_csv(expected / "AUCperReader.csv"):
        column = 0 if row["modalityA"] == "testA" else 1
        if row["modalityB"] == "NO_MOD":
            assert result.reader_aucs[row["readerID"]][column] == pytest.approx(
                number(row["AUCA"]), abs=1e-9
            )


def test_refuses_what_it_cannot_analyse():
    truth = np.array([True, False, True, False])
    with pytest.raises(ValueError, match="readers x cases x 2"):
        analyse(np.zeros((2, 3, 2)), truth)
    with pytest.raises(ValueError, match="two readers and cases of both truths"):
        analyse(np.zeros((1, 4, 2)), truth)
    with pytest.raises(ValueError, match="0 diseased"):
        analyse(np.zeros((2, 4, 2)), np.zeros(4, dtype=bool))


def test_a_missing_read_is_left_out_and_readers_are_weighted_by_pairs():
    """Hand-computed: reader 1 reads 3 x 4 pairs, reader 2 only 3 x 3 (one normal case
    missing), so the reader average weights them 12 : 9."""
    truth = np.array([True, True, True, False, False, False, False])
    scores = np.full((2, 7, 2), np.nan)
    scores[0, :, 0] = [9, 8, 7, 6, 1, 2, 3]  # every pair right -> 1.0
    scores[1, :, 0] = [5, 1, 4, 3, 2, 6, np.nan]  # 4 of 9 pairs right
    scores[:, :, 1] = [[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]]
    result = analyse(scores, truth)
    assert result.reader_aucs["reader 2"][0] == pytest.approx(4 / 9)
    assert result.a.estimate == pytest.approx((12 * 1.0 + 9 * 4 / 9) / 21)
    assert not result.fully_crossed and np.isnan(result.difference.df_hillis)
    assert result.excluded == ()


def test_reads_covering_fewer_than_three_cases_of_a_truth_are_left_out_as_imrmc_does():
    """iMRMC keeps a reader's reads in a modality only from 3 normal and 3 diseased cases:
    reader 3 read 2 normal cases with explanations, so those reads do not count."""
    rng = np.random.default_rng(0)
    truth = np.array([True] * 4 + [False] * 4)
    scores = rng.normal(size=(3, 8, 2)) + truth[None, :, None]
    scores[2, 6:, 0] = np.nan
    result = analyse(scores, truth)
    assert result.excluded == (("reader 3", "A"),)
    assert np.isnan(result.reader_aucs["reader 3"][0])
    assert not np.isnan(result.reader_aucs["reader 3"][1])
    without = analyse(np.where(np.arange(3)[:, None, None] == 2, np.nan, scores), truth)
    assert result.a.estimate == pytest.approx(without.a.estimate)
    scores[2, 5:, 0] = np.nan  # nobody else read too few: still two readers
    scores[1, 5:, 0] = np.nan
    with pytest.raises(ValueError, match="two readers who each read at least 3 normal"):
        analyse(scores, truth)
