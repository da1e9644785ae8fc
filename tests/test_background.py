"""The dashboard's background jobs: a separate, lower-priority process whose output goes
to a log, that stops once the process that started it has ended."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cxrxai.background import start_job

REPO = Path(__file__).resolve().parents[1]


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_job_runs_at_low_priority_and_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "logs" / "job.log"
    arguments = ["precompute-demo", "--maps-only", "--methods", "gradcam"]
    job = start_job([*arguments, "--data-root", str(tmp_path / "no-data")], log)
    assert _nice(job.pid) == _nice(os.getpid()) + 10
    assert job.wait(timeout=300) == 0
    assert "explanation(s) computed and cached" in log.read_text()
    assert list((tmp_path / "cache").rglob("*.npz"))  # the sample DICOM's map


def test_a_job_stops_when_its_starter_has_ended(tmp_path):
    """The starter (a dashboard) ends at once; its job notices before its next map and stops
    instead of computing the rest (LIME and SHAP on every demo case: minutes)."""
    starter = (
        "import sys; from pathlib import Path; from cxrxai.background import start_job; "
        "job = start_job(['precompute-demo', '--maps-only', '--methods', 'lime,shap'], "
        f"Path({str(tmp_path / 'job.log')!r})); print(job.pid)"
    )
    env = {**os.environ, "CXRXAI_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", starter], cwd=REPO, env=env, text=True,
                          capture_output=True, check=True)  # fmt: skip
    pid = int(done.stdout.strip())
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if status == "Z":  # ended (a zombie until its new parent reaps it)
            break
        time.sleep(1)
    else:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)
            raise AssertionError("the orphaned job kept computing")
    assert "started this has ended: stopping" in (tmp_path / "job.log").read_text()
