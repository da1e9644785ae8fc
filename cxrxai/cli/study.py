"""The trust study: admin password, creation, preparation, progress, analysis and export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrxai import environment
from cxrxai.cli.common import (
    add_data_root,
    add_model_args,
    cases_for,
    load_bundle,
    parse_methods,
    parse_names,
    starter_alive,
)
from cxrxai.cli.pacs import add_pacs_source
from cxrxai.environment import data_root
from cxrxai.errors import CxrxaiError


def add_study(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser(
        "study", help="trust study: admin password, creation, progress, analysis and export"
    )
    study.add_argument(
        "action",
        choices=("set-password", "create", "prepare", "progress", "analyse", "export"),
        help="set-password: set or reset the admin password (prompted twice, or one line on stdin)",
    )
    study.add_argument("--code", help="the study code (all actions but create)")
    study.add_argument("--name", default="Trust in explanations", help="create: study name")
    study.add_argument(
        "--dataset",
        default="covid-qu-ex",
        help="create: covid-qu-ex, nih, manifest, or pacs (with --url: cases whose study holds "
        "a reading, a SEG or SR, as their truth)",
    )
    study.add_argument("--split", default="Val", help="create: split name, folder or manifest")
    study.add_argument("--classes", default=None, help="create: only these labels")
    study.add_argument("--limit", type=int, default=None, help="create: first N cases per class")
    study.add_argument(
        "--methods",
        default="gradcam,lime,lrp",
        help="create: methods, variants too (gradcam,gradcam(layer=blocks.6))",
    )
    study.add_argument("--open", action="store_true", help="create: show method names")
    study.add_argument(
        "--explain",
        choices=("prediction", "reference"),
        default="prediction",
        help="create: the panels explain the model's prediction (default) or the case's "
        "reference label",
    )
    study.add_argument(
        "--first-read",
        action="store_true",
        help="create: raters read each case without explanations first (decision changes)",
    )
    study.add_argument("--seed", type=int, default=0)
    add_data_root(study)
    study.add_argument(
        "--db",
        type=Path,
        default=None,
        help="study database (default: $CXRXAI_STUDY_DB, else results/study.sqlite)",
    )
    study.add_argument("--out", type=Path, default=Path("results/study-export"))
    study.add_argument("--real-names", action="store_true", help="export names, not pseudonyms")
    study.add_argument(
        "--results",
        type=Path,
        default=None,
        help="evaluation database: relate trust to IoU (top 10 %%) per case x method",
    )
    study.add_argument(
        "--parent-pid",
        type=int,
        help="prepare: stop (between maps) once the process with this id, which started "
        "this one, has ended",
    )
    add_model_args(study)
    add_pacs_source(study, dataset=False)
    study.add_argument(
        "--to-pacs",
        default=None,
        metavar="URL",
        help="export: also file the readers' marks on PACS cases' studies (SR and GSPS)",
    )
    study.set_defaults(run=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from cxrxai.study import analysis, service
    from cxrxai.study.db import connect

    path = args.db or environment.study_path()
    if args.action == "set-password":
        db = connect(path)
        replacing = service.admin_password_set(db)
        service.set_admin_password(db, _new_password(), replace=True)
        print(f"admin password {'reset' if replacing else 'set'} in {path}")
        return 0
    if args.action != "create" and not Path(path).is_file():
        raise CxrxaiError(
            f"Study database '{path}' not found; create a study on the Study admin page first."
        )
    db = connect(path)
    if args.action == "create":
        password = environment.admin_password_from_env()
        if not password:
            raise CxrxaiError("Set CXRXAI_ADMIN_PASSWORD to the study admin password.")
        root = data_root(args.data_root)
        wanted = parse_names(args.classes) if args.classes else []
        refs = [
            service.CaseRef(
                c.case_id,
                c.dataset,
                c.split,
                next((x for x in c.labels if x in wanted), c.labels[0]),
            )
            for c in cases_for(
                args.dataset,
                args.split,
                root,
                args.limit,
                args.classes,
                args.manifest_anywhere,
                pacs=args,
            )
            if c.labels
        ]
        code = service.create_study(
            db,
            password,
            args.name,
            refs,
            parse_methods(args.methods, variants=True),
            not args.open,
            args.seed,
            first_read=args.first_read,
            explain=args.explain,
        )
        print(f"study {code} created with {len(refs)} cases; raters join with this code")
        return 0
    if not args.code:
        raise CxrxaiError("Pass --code (the study code).")
    study = service.study_by_code(db, args.code)
    if args.action == "prepare":
        from cxrxai.study.prepare import map_count, prepare_study

        done = prepare_study(
            db,
            study["id"],
            load_bundle(args),
            data_root(args.data_root),
            keep_going=lambda: starter_alive(args.parent_pid),
        )
        ready, total = map_count(db, study["id"])
        print(f"{done} map(s) prepared now; {ready} of {total} ready")
        return 0
    if args.action == "progress":
        for row in service.progress(db, study["id"]):
            print(f"{row['rater']}: {row['done']}/{row['total']}")
        return 0
    if args.action == "export":
        for written in analysis.export(db, study["id"], args.out, args.real_names):
            print(written)
        if args.to_pacs:
            print(_marks_to_pacs(args, db, study))
        return 0
    rows = analysis.ratings(db, study["id"])
    print(f"{len(rows)} ratings in study {study['code']} ({study['mode']})")
    from cxrxai.study.findings import as_lines, findings, ratings_per

    unit_values = None
    if args.results:
        from cxrxai.evaluation.browse import unit_values as read_unit_values
        from cxrxai.evaluation.store import open_results

        unit_values = read_unit_values(open_results(args.results))
    for finding in [*ratings_per(rows), *findings(db, study, rows, unit_values)]:
        print("\n".join(as_lines(finding)))
    return 0


def _new_password() -> str:
    """The new admin password: typed twice at a prompt (not echoed), or one line on
    stdin for scripts (``... study set-password < file``)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    from getpass import getpass

    first = getpass("New admin password: ")
    if getpass("Repeat it: ") != first:
        raise CxrxaiError("The two passwords differ; nothing was changed.")
    return first


def _marks_to_pacs(args: argparse.Namespace, db, study) -> str:
    """Readers' marks of the study's DICOM cases as an SR and a GSPS each, on their studies."""
    from cxrxai import __version__
    from cxrxai.cli.pacs import open_pacs
    from cxrxai.pacs.objects import send_results
    from cxrxai.pacs.results import Algorithm
    from cxrxai.study import analysis
    from cxrxai.study.marks import marks_results

    results = marks_results(
        analysis.reader_marks(db, study["id"], args.real_names),
        analysis.case_images(db, study["id"]),
    )
    recorder = Algorithm(f"cxrxai reader study {study['code']}", "-", "", f"cxrxai {__version__}")
    source = open_pacs(args, args.to_pacs)
    try:
        sent = sum(send_results(source, Path(path), result, recorder) for path, result in results)
    finally:
        source.close()
    return f"sent {sent} DICOM objects of readers' marks on {len(results)} case(s)"
