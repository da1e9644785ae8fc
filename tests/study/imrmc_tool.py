"""The FDA's iMRMC 4.0.3 for the tests: where it is, how to run it, how to read its input
and its statAnalysis.csv (../shared/tools/imrmc, README there)."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> Path:
    """$CXRXAI_IMRMC, else ``tools/imrmc`` of the shared folder: beside this checkout
    (``../shared``), or beside the data root that $CXRXAI_DATA names (``shared/data``)."""
    if os.environ.get("CXRXAI_IMRMC"):
        return Path(os.environ["CXRXAI_IMRMC"])
    beside = ROOT.parent / "shared" / "tools" / "imrmc"
    if not beside.exists() and os.environ.get("CXRXAI_DATA"):
        return Path(os.environ["CXRXAI_DATA"]).parent / "tools" / "imrmc"
    return beside


TOOL = _tool()


def require_imrmc() -> Path:
    """iMRMC's `run` script; FAILS when it (or java / xvfb-run) is missing and CI=true,
    skips with the reason otherwise."""
    needed = {
        f"iMRMC at {TOOL} ($CXRXAI_IMRMC)": (TOOL / "run").exists(),
        "java": shutil.which("java") is not None,
        "xvfb-run (Debian's xvfb; scripts/test.sh installs it)": bool(shutil.which("xvfb-run")),
    }
    missing = [what for what, ok in needed.items() if not ok]
    if missing:
        message = "iMRMC cannot run here: missing " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return TOOL / "run"


def run_imrmc(input_file: Path, out_dir: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Run iMRMC on the file exactly as given; statAnalysis.csv's rows by (modalityA,
    modalityB) (``NO_MOD`` for a single modality)."""
    # its own session, so that a hang (iMRMC's batch mode stops on an exception but its
    # window thread keeps java alive) is killed with xvfb-run and Xvfb
    process = subprocess.Popen(
        [str(require_imrmc()), str(input_file), str(out_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"iMRMC did not finish on {input_file.name}: {output[-2000:]}")
    table = out_dir / "statAnalysis.csv"
    assert process.returncode == 0 and table.exists(), (
        f"iMRMC wrote no statAnalysis.csv (exit {process.returncode}): {output[-2000:]}"
    )
    return {(row["modalityA"], row["modalityB"]): row for row in read_csv(table)}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def parse_imrmc(text: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """An iMRMC input file as scores (readers x cases x modalities, NaN: not read),
    truth, reader ids and modality ids (both sorted, as iMRMC sorts them)."""
    lines = text.splitlines()
    body = lines[[line.strip() for line in lines].index("BEGIN DATA:") + 1 :]
    reads: dict[tuple[str, str, str], float] = {}
    truth: dict[str, int] = {}
    for line in body:
        if not line.strip():
            continue
        reader, case, modality, score = (field.strip() for field in line.split(","))
        if modality == "truth":
            truth[case] = int(float(score))
        else:
            reads[(reader, case, modality)] = float(score)
    readers = sorted({key[0] for key in reads})
    modalities = sorted({key[2] for key in reads})
    cases = sorted(truth)
    scores = np.full((len(readers), len(cases), len(modalities)), np.nan)
    for (reader, case, modality), score in reads.items():
        scores[readers.index(reader), cases.index(case), modalities.index(modality)] = score
    return scores, np.array([truth[c] for c in cases], dtype=bool), readers, modalities


def number(text: str) -> float:
    """A number of iMRMC's CSV (``NA``/``NaN``: not computed)."""
    return float("nan") if text.strip() in ("NA", "NaN", "") else float(text)


def assert_row_matches(
    inference: dict, row: dict[str, str], tolerance: float = 1e-6, hillis: bool = True
) -> None:
    """Every number of one statAnalysis.csv row equals the app's to ``tolerance``: the
    estimate, its variance, and per test (Normal, BDG, Hillis) df, p-value, CI, rejection
    (``hillis=False``: all but Hillis's)."""
    is_difference = row["modalityB"] != "NO_MOD"
    expected = {
        "estimate": row["AUCAminusAUCB"] if is_difference else row["AUCA"],
        "variance": row["varAUCAminusAUCB"] if is_difference else row["varAUCA"],
        "p_normal": row["pValueNormal"],
        "df_bdg": row["dfBDG"],
        "p_bdg": row["pValueBDG"],
        "df_hillis": row["dfHillis"],
        "p_hillis": row["pValueHillis"],
    }
    for key, text in expected.items():
        if key.endswith("hillis") and not hillis:
            continue
        want, got = number(text), float(inference[key])
        if np.isnan(want):
            assert np.isnan(got) or key.endswith("hillis"), (key, got, text)
            continue
        assert abs(got - want) <= tolerance, (key, got, want)
    for test, name, reject_column in (
        ("normal", "normal", "rejectNormal"),
        ("bdg", "BDG", "rejectBDG"),
        ("hillis", "Hillis", "rejectHillis"),
    ):
        low, high = number(row[f"botCI{name}"]), number(row[f"topCI{name}"])
        if test == "hillis" and (np.isnan(number(row["dfHillis"])) or not hillis):
            continue
        got_low, got_high = inference[f"ci_{test}"]
        if np.isnan(low) and np.isnan(high) and np.isnan(got_low) and np.isnan(got_high):
            continue
        assert abs(got_low - low) <= tolerance and abs(got_high - high) <= tolerance, (
            test, (got_low, got_high), (low, high),
        )  # fmt: skip
        reject = number(row[reject_column])
        if not np.isnan(reject):
            assert float(inference[f"p_{test}"] < 0.05) == reject, (test, reject)
