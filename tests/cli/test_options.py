"""The command line as data: every command, option, default, choice and help text equals the
record in data/options.json, taken from the single-module ``cli.py`` before it became the
``cxrxai/cli/`` package - so a change of the code cannot change what users type.

A deliberate change of an option updates the record:
``PYTHONPATH=. .venv/bin/python tests/cli/cli_options.py > tests/cli/data/options.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_options import option_table

from cxrxai.cli import build_parser

RECORD = Path(__file__).with_name("data") / "options.json"
REPO = Path(__file__).resolve().parents[2]


def test_every_command_and_option_is_as_recorded():
    current = json.loads(json.dumps(option_table(build_parser()), sort_keys=True))
    recorded = json.loads(RECORD.read_text())
    assert list(current) == list(recorded) or set(current) == set(recorded)
    for command, entry in recorded.items():
        assert current[command] == entry, f"'{command or 'python -m cxrxai'}' changed"


def test_the_commands_keep_their_order_in_help():
    recorded = json.loads(RECORD.read_text())
    assert option_table(build_parser())[""]["commands"] == recorded[""]["commands"]


def test_help_imports_neither_torch_nor_the_library():
    """``--help`` and a command's ``--help`` answer at once: the library (torch, timm,
    zennit, shap: seconds) is imported by the commands' functions, not by the parser."""
    code = (
        "import sys, contextlib, io\n"
        "from cxrxai.cli import main\n"
        "for argv in (['--help'], ['evaluate', '--help'], ['study', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'numpy', 'shap') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_the_dataset_help_names_every_dataset_format():
    """The help of ``evaluate --dataset`` is written by hand (record above); it names
    every format of the registry and no other."""
    import re

    from cxrxai.datasets.registry import DATASETS

    recorded = json.loads(RECORD.read_text())
    (option,) = [o for o in recorded["evaluate"]["options"] if o["dest"] == "dataset"]
    named = set(re.findall(r"[a-z][a-z-]+(?= \(|,| or|$)", option["help"]))
    assert named == set(DATASETS), option["help"]
