"""Command line: ``python -m cxrxai COMMAND ...`` (``--help`` lists them).

User errors (:class:`~cxrxai.errors.CxrxaiError`) print one clear line and exit 2; they
never show a traceback. Each command imports what it needs inside its function: the
library pulls in torch, timm, zennit, shap and friends (seconds), which ``--help``,
``info`` or ``study progress`` never need.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cxrxai.cli import demo, evaluate, explain, model, pacs, study, training
from cxrxai.errors import CxrxaiError

# Each group module declares its commands' arguments next to their handlers; this is the
# order ``--help`` lists them in.
COMMANDS = (
    training.add_train,
    training.add_train_lungs,
    training.add_calibrate_ood,
    model.add_evaluate_model,
    model.add_predict,
    explain.add_explain,
    explain.add_methods,
    explain.add_layers,
    explain.add_sanity,
    evaluate.add_evaluate,
    study.add_study,
    demo.add_precompute_demo,
    evaluate.add_report,
    evaluate.add_merge_results,
    model.add_import_xrv,
    model.add_info,
    pacs.add_pacs_find,
    pacs.add_pacs_cache,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxrxai", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CxrxaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
