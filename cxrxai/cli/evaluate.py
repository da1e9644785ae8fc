"""Batch evaluation and its reports: every case of a split explained and scored, tables and
figures, shard databases joined.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrxai import environment
from cxrxai.cli.common import (
    add_data_root,
    add_lung_model,
    add_model_args,
    add_params,
    cases_for,
    load_bundle,
    lung_model,
    parse_methods,
)
from cxrxai.cli.pacs import ResultSender, add_pacs_source, add_to_pacs, check_to_pacs
from cxrxai.environment import data_root
from cxrxai.errors import CxrxaiError


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    batch = commands.add_parser(
        "evaluate", help="explanations + localisation metrics for every case of a split"
    )
    batch.add_argument(
        "--dataset",
        default="covid-qu-ex",
        help="covid-qu-ex, nih, manifest, chexlocalize (--split: its JSON), vindr "
        "(--split: its annotation CSV) or pacs (a search of --url; --split STUDY_UID "
        "alone: that study as cached)",
    )
    batch.add_argument(
        "--split", default="Val", help="split name, folder, manifest, JSON or CSV file"
    )
    batch.add_argument(
        "--images", type=Path, help="chexlocalize / vindr: the image folder (default: beside)"
    )
    batch.add_argument(
        "--heatmaps",
        type=Path,
        help="score maps computed elsewhere instead of explaining: a folder of .npy / .npz / "
        "16-bit .png / CheXlocalize .pkl maps named <label>/<image stem> or "
        "<image stem>_<label> (needs --method-name)",
    )
    batch.add_argument("--method-name", help="with --heatmaps: the name rows carry")
    batch.add_argument(
        "--sample",
        type=int,
        help="a random N cases per class (reproducible with --seed), instead of all",
    )
    batch.add_argument("--methods", default="gradcam,gradcam++,lime,shap,lrp")
    batch.add_argument(
        "--db",
        type=Path,
        default=None,
        help="results database (default: $CXRXAI_RESULTS, else results/evaluation.sqlite)",
    )
    batch.add_argument("--csv", type=Path, help="also export the rows as CSV here")
    batch.add_argument("--classes", default=None, help="only cases of these comma-separated labels")
    batch.add_argument(
        "--targets",
        choices=("labels", "predicted"),
        default="labels",
        help="explain each case's labels that the model outputs (default), or the labels the "
        "model predicts: any dataset then gets the lung and border shares (no truth needed)",
    )
    batch.add_argument("--limit", type=int, default=None, help="first N cases per class")
    batch.add_argument(
        "--shard",
        help="K/N: only the cases of shard K of N (by a hash of the case id), into their own "
        "--db; merge the shards' databases with merge-results",
    )
    batch.add_argument(
        "--within-lungs",
        action="store_true",
        help="restrict regions to the lungs: the case's lung mask, else the lung-field model's",
    )
    add_lung_model(batch)
    batch.add_argument("--empty", choices=("nan", "zero"), default="nan", help="empty-mask mode")
    batch.add_argument("--faithfulness", action="store_true", help="deletion/insertion too")
    batch.add_argument(
        "--seed", type=int, default=0, help="of the stochastic methods (LIME, SHAP) and --sample"
    )
    batch.add_argument("--no-cache", action="store_true", help="do not use the heatmap cache")
    engine = batch.add_argument_group(
        "engine", "where the work runs (the database is always written by this process)"
    )
    engine.add_argument(
        "--engine",
        choices=("process", "ray"),
        default="process",
        help="process: here, one case after another (default); ray: on Ray actors, on this "
        "machine or a cluster (pip install -r requirements-ray.txt)",
    )
    engine.add_argument(
        "--address", help="ray: join the cluster there (default: start a local Ray instance)"
    )
    engine.add_argument(
        "--workers",
        type=int,
        help="ray: actors to start (default: one per GPU, else one per --cpus-per-worker CPUs)",
    )
    engine.add_argument(
        "--gpus-per-worker",
        type=float,
        help="ray: GPUs per actor (default 1 when the cluster has a GPU, else 0; 0.5 shares "
        "one); with --engine ray this, not --device, puts the work on GPUs",
    )
    engine.add_argument(
        "--cpus-per-worker", type=float, default=1.0, help="ray: CPUs per actor (default 1)"
    )
    add_params(batch)
    add_data_root(batch)
    add_model_args(batch)
    add_pacs_source(batch, dataset=False)
    add_to_pacs(batch)
    batch.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cxrxai.evaluation.evaluate import Evaluator, RunOptions, run_in_process
    from cxrxai.evaluation.store import LOCALISATION, export_csv, open_results, record_run
    from cxrxai.explain.cache import HeatmapCache
    from cxrxai.explain.params import parse_param_specs, variant
    from cxrxai.explain.registry import get_explainer

    check_to_pacs(args)
    external = None
    if args.heatmaps is not None or args.method_name:
        from cxrxai.explain.external import ExternalMaps

        if args.heatmaps is None or not args.method_name:
            raise CxrxaiError("--heatmaps and --method-name go together: the folder and a name.")
        external = ExternalMaps(args.heatmaps, args.method_name)
        methods, method_params = [external.name], {}
    else:
        methods = parse_methods(args.methods)
        method_params = parse_param_specs(args.param, methods)
        for name in methods:
            get_explainer(name, **method_params.get(name, {}))  # fail before any work
    from cxrxai.datasets.registry import shard_cases

    engine = _engine(args)  # before any work: Ray missing or a bad option is said at once
    root = data_root(args.data_root)
    cases = cases_for(
        args.dataset,
        args.split,
        root,
        args.limit,
        args.classes,
        args.manifest_anywhere,
        args.images,
        args.sample,
        args.seed,
        pacs=args,
    )
    cases = shard_cases(cases, args.shard)
    if engine is not None:
        # the driver only plans and writes; the workers' device follows --gpus-per-worker,
        # and a driver model on a GPU would take memory the workers there need
        args.device = "cpu"
    bundle = load_bundle(args)
    segmenter = lung_model(args, bundle)
    db_path = args.db or environment.results_path()
    db = open_results(db_path)
    record_run(
        db,
        bundle.path,
        bundle.weights_sha256,
        root,
        args.split,
        [name if external else variant(name, method_params.get(name, {})) for name in methods],
        heatmaps=None if external is None else str(external.folder),
        within_lungs=args.within_lungs,
        targets=args.targets,
        empty=args.empty,
        seed=args.seed,
        method_params=method_params,
        lung_model=None if segmenter is None else segmenter.describe(),
        engine=args.engine,
        shard=args.shard,
    )
    options = RunOptions(
        empty=args.empty,
        within_lungs=args.within_lungs,
        targets=args.targets,
        faithfulness=args.faithfulness,
        seed=args.seed,
        method_params=method_params,
    )
    evaluator = Evaluator(
        bundle,
        methods,
        options,
        cache=None if args.no_cache else HeatmapCache(),
        segmenter=segmenter,
        external=external,
    )
    if engine is None:
        summary = run_in_process(
            evaluator, cases, db, lambda items: tqdm(items, desc="cases", unit="case")
        )
    else:
        summary = engine.run(
            evaluator, cases, db, lambda total: tqdm(total=total, desc="cases", unit="case")
        )
        retried = f"; {summary.retries} case(s) retried after a worker died"
        print(
            f"Ray: {summary.workers} worker(s), {summary.gpus_per_worker:g} GPU(s) each"
            + (retried if summary.retries else "")
        )
    print(
        f"{summary.units_done} case x method units computed, {summary.units_skipped} already "
        f"in {db_path}"
    )
    if summary.maps_missing:
        print(
            f"{len(summary.maps_missing)} map(s) not in {args.heatmaps}, not scored "
            f"(e.g. {summary.maps_missing[0]})"
        )
    if summary.cases_without_target:
        print(
            f"{len(summary.cases_without_target)} case(s) skipped: none of their labels is an "
            f"output of this model (e.g. {summary.cases_without_target[0]})"
        )
    if args.csv:
        print(f"{export_csv(db, LOCALISATION, args.csv)} rows written to {args.csv}")
    from cxrxai.evaluation.summaries import refresh

    refresh(db)  # what the Cases page shows first, computed once here
    if args.to_pacs:
        sender = ResultSender(args, bundle)
        try:
            count = sender.send_evaluated(evaluator, cases)
        finally:
            sender.close()
        print(f"sent {count} DICOM objects to {sender.source.address}")
    return 0


def add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="tables and figures from an evaluation database")
    report.add_argument(
        "--db",
        type=Path,
        default=None,
        help="results database (default: $CXRXAI_RESULTS, else results/evaluation.sqlite)",
    )
    report.add_argument("--out", type=Path, default=Path("results/report"))
    report.add_argument("--mode", default="top-percent", help="region mode of the main table")
    report.add_argument("--value", type=float, default=10.0, help="its value (p, t or N)")
    report.set_defaults(run=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from cxrxai.evaluation.report import write_report
    from cxrxai.evaluation.store import open_results

    db_path = args.db or environment.results_path()
    if not db_path.is_file():
        raise CxrxaiError(f"Results database '{db_path}' not found; run 'evaluate' first.")
    path = write_report(open_results(db_path), args.out, args.mode, args.value)
    print(f"report written to {path}")
    return 0


def add_merge_results(commands: argparse._SubParsersAction) -> None:
    merge = commands.add_parser(
        "merge-results",
        help="join the databases of evaluate runs (e.g. its --shard runs) into one",
    )
    merge.add_argument("out", type=Path, help="the database to add the rows to (made if new)")
    merge.add_argument("shards", type=Path, nargs="+", help="the databases to copy from")
    merge.set_defaults(run=cmd_merge_results)


def cmd_merge_results(args: argparse.Namespace) -> int:
    from cxrxai.evaluation.store import merge_results, open_results

    missing = [str(path) for path in args.shards if not path.is_file()]
    if missing:
        raise CxrxaiError(f"Results database(s) not found: {', '.join(missing)}.")
    from cxrxai.evaluation.summaries import refresh

    db = open_results(args.out)
    added = merge_results(db, args.shards)
    refresh(db)  # what the Cases page shows first, for the joined rows
    print(
        f"{added['localisation']} localisation, {added['faithfulness']} faithfulness and "
        f"{added['runs']} run row(s) added to {args.out} from {len(args.shards)} database(s)"
    )
    return 0


def _engine(args: argparse.Namespace):  # -> RayEngine | None (None: in this process)
    ray_only = {
        "--address": args.address,
        "--workers": args.workers,
        "--gpus-per-worker": args.gpus_per_worker,
    }
    if args.engine != "ray":
        given = [name for name, value in ray_only.items() if value is not None]
        if given:
            raise CxrxaiError(f"{', '.join(given)} go(es) with --engine ray.")
        return None
    from cxrxai.evaluation.ray_engine import RayEngine, RayOptions, require_ray

    require_ray()
    return RayEngine(
        RayOptions(
            address=args.address,
            workers=args.workers,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker,
        )
    )
