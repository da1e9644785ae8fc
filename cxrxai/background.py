"""Jobs the dashboard hands to a separate process: ``python -m cxrxai <arguments>`` at low
priority (the visitors' own requests come first), output appended to a log file. Each
job's command stops by itself once the server that started it has ended
(``--parent-pid``: this process's id, checked between steps), so a stopped dashboard
leaves nothing computing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path


def start_job(arguments: list[str], log: Path) -> subprocess.Popen:
    """Start ``python -m cxrxai *arguments --parent-pid <this process>``; returns it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cxrxai", *arguments, "--parent-pid", str(os.getpid())]
    with log.open("ab") as handle:
        job = subprocess.Popen(command, stdout=handle, stderr=handle, stdin=subprocess.DEVNULL)
    # lowered from here, not by preexec_fn: Streamlit serves sessions from threads, and
    # running Python between fork and exec in a threaded process can deadlock the child
    with contextlib.suppress(OSError):  # already ended, or not permitted: keep it running
        os.setpriority(os.PRIO_PROCESS, job.pid, min(os.getpriority(os.PRIO_PROCESS, 0) + 10, 19))
    return job
