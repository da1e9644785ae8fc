"""The demo: the bundled cases' default explanations cached (run.sh runs it)."""

from __future__ import annotations

import argparse
import sys

from cxrxai import environment
from cxrxai.cli.common import (
    add_data_root,
    parse_methods,
    starter_alive,
)
from cxrxai.environment import data_root


def add_precompute_demo(commands: argparse._SubParsersAction) -> None:
    precompute = commands.add_parser(
        "precompute-demo", help="cache the demo cases' default explanations (run.sh does it)"
    )
    precompute.add_argument("--methods", default="gradcam,lrp")
    precompute.add_argument(
        "--maps-only",
        action="store_true",
        help="cache the maps only, without scoring them into the demo evaluation",
    )
    precompute.add_argument(
        "--parent-pid",
        type=int,
        help="stop (before its next map) once the process with this id, which started this one, "
        "has ended (the dashboard's background job)",
    )
    add_data_root(precompute)
    precompute.set_defaults(run=cmd_precompute_demo)


def cmd_precompute_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cxrxai.demo import demo_bundle, evaluate_demo, precompute_demo

    methods = tuple(parse_methods(args.methods))
    root = data_root(args.data_root)
    bundle = demo_bundle()  # one load for both steps

    def keep_going() -> bool:  # asked before each map: LIME or SHAP can take minutes
        if starter_alive(args.parent_pid):
            return True
        print("the process that started this has ended: stopping", file=sys.stderr)
        return False

    def progress(items):
        return tqdm(items, desc="demo cases", unit="case")

    count = precompute_demo(methods, root, progress, bundle, keep_going)
    if not starter_alive(args.parent_pid):
        return 0
    print(f"{count} explanation(s) computed and cached")
    if args.maps_only:
        return 0
    path = environment.demo_results_path()
    summary = evaluate_demo(methods, root, path, bundle)
    if summary.units_done or summary.units_skipped:
        print(
            f"Demo evaluation: {summary.units_done} case x method unit(s) scored, "
            f"{summary.units_skipped} already in {path}"
        )
    else:
        print("Demo evaluation: no demo case has a label of the demo model (no data root?)")
    return 0
