"""Many raters at once, duplicate submissions and killed writers on one study file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cxrxai.study import service
from cxrxai.study.db import connect
from cxrxai.study.service import CaseRef

PASSWORD = "correct horse"
METHODS = ["gradcam", "lime", "shap"]
N_CASES = 3
REPO = Path(__file__).resolve().parents[2]

# A rater in a process of its own: join, then rate every assignment.
WORKER = """
import sys
from cxrxai.study import service
from cxrxai.study.db import connect
db = connect(sys.argv[1])
rater = service.join(db, sys.argv[2], sys.argv[3])
while (task := service.next_assignment(db, rater)) is not None:
    scores = {l: {s: 3 for s in service.SCORES} for l in task.shown_as}
    service.submit(db, rater, task.id, scores, True, "from a process")
"""

# Rates forever (the test kills it in the middle).
ENDLESS = """
import sys
from cxrxai.study import service
from cxrxai.study.db import connect
db = connect(sys.argv[1])
i = 0
while True:
    rater = service.join(db, sys.argv[2], f"endless {i}")
    i += 1
    while (task := service.next_assignment(db, rater)) is not None:
        scores = {l: {s: 2 for s in service.SCORES} for l in task.shown_as}
        service.submit(db, rater, task.id, scores, None, "x" * 4000)
"""


@pytest.fixture()
def study(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "study.sqlite"
    db = connect(path)
    service.set_admin_password(db, PASSWORD)
    cases = [CaseRef(f"c{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(N_CASES)]
    code = service.create_study(db, PASSWORD, "load", cases, METHODS)
    db.conn.close()
    return path, code


def _check_consistent(path: Path) -> None:
    db = connect(path)
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    # every assignment has all of its panels or none: no half-written rating
    per_assignment = db.execute(
        "select assignment_id, count(*) from ratings group by assignment_id"
    ).fetchall()
    assert all(count == len(METHODS) for _, count in per_assignment)


def _rate_all(path: Path, code: str, name: str, errors: list) -> None:
    try:
        db = connect(path)  # one connection per thread
        rater = service.join(db, code, name)
        while (task := service.next_assignment(db, rater)) is not None:
            scores = {label: {s: 4 for s in service.SCORES} for label in task.shown_as}
            service.submit(db, rater, task.id, scores, False)
            service.submit(db, rater, task.id, scores, False)  # a double click
    except Exception as exc:  # reported to the main thread
        errors.append(exc)


def test_twenty_threads_and_twenty_processes(study):
    path, code = study
    errors: list = []
    threads = [
        threading.Thread(target=_rate_all, args=(path, code, f"thread rater {i}", errors))
        for i in range(20)
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), code, f"process rater {i}"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for p in processes:
        _, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()[-2000:]
    assert not errors, errors[:3]
    db = connect(path)
    assert db["raters"].count == 40
    # nothing lost, nothing duplicated
    assert db["ratings"].count == 40 * N_CASES * len(METHODS)
    assert (
        db.execute(
            "select count(*) from (select assignment_id, method from ratings "
            "group by assignment_id, method having count(*) > 1)"
        ).fetchone()[0]
        == 0
    )
    assert len({r["pseudonym"] for r in db["raters"].rows}) == 40
    _check_consistent(path)


def test_killed_writer_leaves_a_consistent_database(study):
    path, code = study
    process = subprocess.Popen(
        [sys.executable, "-c", ENDLESS, str(path), code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    db = connect(path)
    deadline = time.time() + 60
    while db["ratings"].count < 30 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no chance to clean up, mid-write or not
    process.wait()
    assert db["ratings"].count >= 30
    _check_consistent(path)
    # and the study goes on: a new rater can still rate
    errors: list = []
    _rate_all(path, code, "after the crash", errors)
    assert not errors
    _check_consistent(path)
