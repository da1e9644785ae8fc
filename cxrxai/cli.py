"""Command line: ``python -m cxrxai COMMAND ...`` (``--help`` lists them).

User errors (:class:`~cxrxai.errors.CxrxaiError`) print one clear line and exit 2; they
never show a traceback. Each command imports what it needs inside its function: the
library pulls in torch, timm, zennit, shap and friends (seconds), which ``--help``,
``info`` or ``study progress`` never need.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cxrxai import settings
from cxrxai.csvout import write_csv
from cxrxai.errors import CxrxaiError
from cxrxai.settings import DATA_ENV_VAR, data_root


def _add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        help=f"folder holding the datasets (default: ${DATA_ENV_VAR}, else ../shared/data)",
    )
    parser.add_argument(
        "--manifest-anywhere",
        action="store_true",
        help="let a manifest's paths lead outside its folder and the data root (only for a "
        "manifest you trust)",
    )


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint folder (default: the bundled demo)",
    )
    _add_device(parser)
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="of batched forward passes (LIME, SHAP, faithfulness); auto = fp32 (bf16 is "
        "faster on a GPU but changes SHAP maps, see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the batched forward passes (LIME, SHAP, faithfulness): 1.4x "
        "faster on 2 CPU cores after a one-off compile of about 35 s",
    )


def _load_bundle(args: argparse.Namespace):  # -> ModelBundle; imported lazily (fast --help)
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.settings import DEMO_CHECKPOINT

    return load_checkpoint(
        args.checkpoint or DEMO_CHECKPOINT, args.device, args.precision, args.compile
    )


def _target(text: str | None) -> int | str | None:
    """A label name, or an output index when the text is a number."""
    return int(text) if text is not None and text.isdigit() else text


def _names(text: str) -> list[str]:
    """Comma-separated names (labels, classes), blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _methods(text: str, variants: bool = False) -> list[str]:
    """Comma-separated method names; with ``variants``, names with settings too
    (``gradcam,gradcam(layer=blocks.6)``: commas inside parentheses do not split)."""
    names, depth, current = [], 0, ""
    for char in text + ",":
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth <= 0:
            names, current = [*names, current.strip()], ""
        else:
            current += char
    names = [name for name in names if name]
    for name in names:
        if "(" in name and not variants:
            method, _, settings = name.partition("(")
            raise CxrxaiError(
                f"'{name}': here a method's settings go in --param, e.g. "
                f"--param {method}.{settings.split(',')[0].rstrip(')')}."
            )
    return names


def _add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="a method's setting, repeatable: gradcam.layer=blocks.5, lime.n_samples=2000, "
        "lrp.composite=epsilon-gamma-box ('python -m cxrxai methods' lists them)",
    )


def _add_lung_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--lung-model",
        type=Path,
        help="lung-field model checkpoint (default: $CXRXAI_LUNG_MODEL, else "
        "models/lungs-unet-lite0-covidqu); predicts lungs for images without a lung mask",
    )
    parser.add_argument(
        "--no-lung-model",
        action="store_true",
        help="no predicted lungs: the lung share is left out where there is no lung mask",
    )


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxrxai", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="fine-tune a classifier and write a checkpoint")
    train.add_argument(
        "--dataset",
        default="covid-qu-ex",
        help="covid-qu-ex (folder layout), nih (splits train/val/test by patient) or manifest",
    )
    train.add_argument(
        "--train",
        default="Train",
        help="training split: a split name under the dataset, a folder, or a manifest",
    )
    train.add_argument("--val", default="Val", help="validation split (same forms as --train)")
    train.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    train.add_argument("--task", choices=("multiclass", "multilabel"), default="multiclass")
    train.add_argument("--epochs", type=int, default=12)
    train.add_argument("--patience", type=int, default=4, help="early stopping patience (epochs)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--input-size", type=int, default=224)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N cases per class of each split (smoke runs)",
    )
    train.add_argument("--max-steps-per-epoch", type=int, default=None)
    train.add_argument("--threads", type=int, default=None)
    train.add_argument(
        "--train-batchnorm",
        action="store_true",
        help="update BatchNorm statistics while training (default: frozen)",
    )
    _add_data_root(train)
    _add_device(train)

    lungs = commands.add_parser(
        "train-lungs",
        help="train the lung-field segmentation model on COVID-QU-Ex's lung masks",
        description="Train the U-Net of models/lungs-unet-lite0-covidqu on COVID-QU-Ex "
        "Train's lung masks, keep the epoch with the best Dice on Val, write a checkpoint "
        "(float16 weights) whose card reports Dice on Val and CPU time per image. About "
        "4 minutes on an H200; hours on a 2-core CPU (docs/lungs.md).",
    )
    lungs.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    lungs.add_argument("--epochs", type=int, default=40)
    lungs.add_argument("--batch-size", type=int, default=32)
    lungs.add_argument("--lr", type=float, default=2e-3)
    lungs.add_argument("--seed", type=int, default=0)
    lungs.add_argument("--max-seconds", type=float, help="stop after the epoch crossing this")
    lungs.add_argument(
        "--limit", type=int, help="use every k-th image to keep N per split (smoke runs)"
    )
    _add_data_root(lungs)
    _add_device(lungs)

    ood = commands.add_parser(
        "calibrate-ood",
        help="fit the out-of-distribution check beside the lung-field model",
        description="Feature statistics of the lung-field model on COVID-QU-Ex Train, "
        "thresholds on Val within a false-alarm budget; written as ood.safetensors into "
        "the lung model's folder (docs/lungs.md).",
    )
    ood.add_argument("--lung-model", type=Path, help="default: the bundled lung-field model")
    ood.add_argument("--budget", type=float, default=0.02, help="largest false-alarm share on Val")
    _add_data_root(ood)

    evaluate = commands.add_parser(
        "evaluate-model", help="classification metrics of a checkpoint on any split"
    )
    evaluate.add_argument("--checkpoint", required=True, type=Path)
    evaluate.add_argument("--dataset", default="covid-qu-ex")
    evaluate.add_argument("--split", default="Val", help="split name, folder or manifest")
    evaluate.add_argument("--out", type=Path, help="write the metrics as JSON here")
    evaluate.add_argument("--limit", type=int, default=None)
    _add_data_root(evaluate)
    _add_device(evaluate)

    predict = commands.add_parser("predict", help="probabilities of one image")
    predict.add_argument("image", type=Path)
    _add_lung_model(predict)
    _add_model_args(predict)

    explain = commands.add_parser(
        "explain", help="explanation maps and overlays of images (files or folders)"
    )
    explain.add_argument("image", type=Path, nargs="+", help="image files, or folders of them")
    explain.add_argument(
        "--methods", default="gradcam", help="comma-separated; see 'python -m cxrxai methods'"
    )
    explain.add_argument(
        "--target",
        default=None,
        help="label name or output index (default: predicted / above threshold)",
    )
    explain.add_argument("--out", type=Path, default=Path("explanations"))
    explain.add_argument("--seed", type=int, default=0)
    explain.add_argument("--no-cache", action="store_true", help="do not use the heatmap cache")
    _add_lung_model(explain)
    _add_params(explain)
    _add_model_args(explain)

    commands.add_parser("methods", help="list the explanation methods and their settings")

    layers = commands.add_parser(
        "layers", help="layers a CAM method can use (name, channels, height, width)"
    )
    _add_model_args(layers)

    sanity = commands.add_parser(
        "sanity", help="cascading model-parameter randomisation check (Adebayo et al.)"
    )
    sanity.add_argument("image", type=Path)
    sanity.add_argument("--methods", default="gradcam,gradcam++,lrp")
    sanity.add_argument("--target", default=None)
    sanity.add_argument(
        "--max-groups", type=int, default=None, help="stop the cascade after this many layer groups"
    )
    sanity.add_argument("--seed", type=int, default=0)
    sanity.add_argument("--csv", type=Path, help="also write the rows as CSV here")
    _add_params(sanity)
    _add_model_args(sanity)

    batch = commands.add_parser(
        "evaluate", help="explanations + localisation metrics for every case of a split"
    )
    batch.add_argument(
        "--dataset",
        default="covid-qu-ex",
        help="covid-qu-ex, nih, manifest, chexlocalize (--split: its JSON) or vindr "
        "(--split: its annotation CSV)",
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
    _add_lung_model(batch)
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
    _add_params(batch)
    _add_data_root(batch)
    _add_model_args(batch)

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
        "--dataset", default="covid-qu-ex", help="create: covid-qu-ex, nih, manifest"
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
    _add_data_root(study)
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
    _add_model_args(study)

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
    _add_data_root(precompute)

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

    merge = commands.add_parser(
        "merge-results",
        help="join the databases of evaluate runs (e.g. its --shard runs) into one",
    )
    merge.add_argument("out", type=Path, help="the database to add the rows to (made if new)")
    merge.add_argument("shards", type=Path, nargs="+", help="the databases to copy from")

    xrv = commands.add_parser(
        "import-xrv",
        help="turn a torchxrayvision weights file you have into a checkpoint folder",
    )
    xrv.add_argument("weights", type=Path, help="the .pt file (a state dict or a pickled model)")
    xrv.add_argument(
        "--trust-pickle",
        action="store_true",
        help="also read a file that pickles the whole model (as torchxrayvision publishes "
        "them): reading it can run code, so only for a file you trust; the checkpoint "
        "written is safetensors",
    )
    xrv.add_argument("--out", type=Path, required=True, help="new checkpoint folder")
    xrv.add_argument("--architecture", choices=("densenet121", "resnet50"), default="densenet121")
    xrv.add_argument(
        "--labels",
        default=None,
        help="comma-separated output labels (default: torchxrayvision's 18 pathologies)",
    )

    info = commands.add_parser("info", help="metadata of an image (no patient identifiers)")
    info.add_argument("image", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CxrxaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _cases_for(
    dataset: str,
    split: str,
    root: Path,
    limit: int | None,
    classes: str | None = None,
    manifest_anywhere: bool = False,
    images: Path | None = None,
    sample: int | None = None,
    seed: int = 0,
):
    """Cases of a split (first ``limit``, or a random ``sample``, per class), only those
    with one of the comma-separated ``classes`` among their labels when given."""
    from cxrxai.datasets.registry import load_split_cases

    cases = load_split_cases(dataset, split, root, limit, manifest_anywhere, images, sample, seed)
    if classes:
        wanted = set(_names(classes))
        cases = [c for c in cases if wanted & set(c.labels)]
    return cases


def cmd_train(args: argparse.Namespace) -> int:
    from cxrxai.datasets.covidqu import CLASSES
    from cxrxai.training.train import TrainConfig, train

    root = data_root(args.data_root)
    anywhere = args.manifest_anywhere
    train_cases = _cases_for(args.dataset, args.train, root, args.limit, None, anywhere)
    val_cases = _cases_for(args.dataset, args.val, root, args.limit, None, anywhere)
    config = TrainConfig(
        task=args.task,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        input_size=args.input_size,
        seed=args.seed,
        max_steps_per_epoch=args.max_steps_per_epoch,
        threads=args.threads,
        device=args.device,
        freeze_batchnorm=not args.train_batchnorm,
    )
    description = {
        "dataset": args.dataset,
        "train_split": args.train,
        "selection_split": args.val,
        "limit_per_class": args.limit,
    }
    preferred = CLASSES if args.dataset == "covid-qu-ex" else ()
    train(train_cases, val_cases, args.out, config, description, preferred)
    return 0


def cmd_train_lungs(args: argparse.Namespace) -> int:
    from cxrxai.training.lungs import (
        LungTrainConfig,
        covidqu_lung_pairs,
        read_lung_pairs,
        train_lung_model,
        write_lung_checkpoint,
    )

    root = data_root(args.data_root) / "covid-qu-ex"
    splits = []
    for split in ("Train", "Val"):
        pairs = covidqu_lung_pairs(root / split)
        if args.limit:
            pairs = pairs[:: max(1, len(pairs) // args.limit)][: args.limit]
        splits.append(read_lung_pairs(pairs))
    config = LungTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_seconds=args.max_seconds,
        precision="bf16",  # autocast on a GPU only
    )
    model, summary = train_lung_model(*splits, config, settings.pick_device(args.device))
    card = write_lung_checkpoint(model, summary, splits[1], args.out)
    print(f"{args.out}: Dice on Val {card.validation_metrics['dice_mean']}")
    return 0


def cmd_calibrate_ood(args: argparse.Namespace) -> int:
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.lungs import LungSegmenter
    from cxrxai.training.ood_fit import features_and_shapes, fit_ood

    if not 0.0 < args.budget < 0.5:
        raise CxrxaiError(f"--budget must be between 0 and 0.5, got {args.budget}")
    segmenter = LungSegmenter.load(args.lung_model)
    root = data_root(args.data_root) / "covid-qu-ex"
    train, _ = features_and_shapes(segmenter, load_covid_qu_ex(root / "Train"))
    val, shapes = features_and_shapes(segmenter, load_covid_qu_ex(root / "Val"))
    stats = fit_ood(train, val, shapes, args.budget)
    path = stats.save(segmenter.folder)
    print(
        f"{path}: distance threshold {stats.distance_threshold:.2f}, lung area "
        f"{stats.area_range[0]:.3f}-{stats.area_range[1]:.3f}, false alarms on Val "
        f"{stats.provenance['val_false_alarms']}"
    )
    return 0


def cmd_evaluate_model(args: argparse.Namespace) -> int:
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.training.train import evaluate_split, load_split, predict_split

    bundle = load_checkpoint(args.checkpoint, args.device)
    cases = _cases_for(
        args.dataset,
        args.split,
        data_root(args.data_root),
        args.limit,
        None,
        args.manifest_anywhere,
    )
    split = load_split(cases, bundle.labels, bundle.card.task, bundle.card.input_size[0])
    probs = predict_split(bundle.model, split, bundle.card, bundle.device)
    metrics = evaluate_split(probs, split, bundle.card)
    text = json.dumps(metrics, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrxai.imageio import read_image

    bundle = _load_bundle(args)
    pixels = read_image(args.image).pixels
    probs = bundle.predict_proba(pixels)[0]
    for label, p in sorted(zip(bundle.labels, probs, strict=False), key=lambda item: -item[1]):
        print(f"{label:>24s}  {p:.4f}")
    _warn_if_out_of_distribution(_lung_model(args, bundle), pixels, args.image)
    return 0


def _warn_if_out_of_distribution(segmenter, pixels, name: Path) -> None:
    """Print the out-of-distribution warning of an image to stderr (predict, explain)."""
    if segmenter is None:
        return
    from cxrxai.ood import OodStats, assess

    (report,) = assess(segmenter, OodStats.load(segmenter.folder), [pixels])
    if report.flagged:
        print(f"warning: {name}: {report.message()}", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from cxrxai.explain.cache import HeatmapCache
    from cxrxai.explain.params import parse_param_specs
    from cxrxai.explain.run import explain_image
    from cxrxai.imageio import image_files, read_image
    from cxrxai.metrics.registry import relevance_shares, shortcut, shortcut_caption

    methods = _methods(args.methods)
    settings = parse_param_specs(args.param, methods)  # before loading anything
    paths = image_files(args.image)
    stems = [path.stem for path in paths]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise CxrxaiError(
            f"Several images are named {', '.join(twice[:3])}: their maps would overwrite "
            "each other in --out; explain them in separate runs with their own --out."
        )
    bundle = _load_bundle(args)
    target = _target(args.target)
    cache = None if args.no_cache else HeatmapCache()
    segmenter = _lung_model(args, bundle)
    failed = []
    for path in tqdm(paths, desc="images", unit="image", disable=len(paths) == 1):
        try:
            image = read_image(path)
        except CxrxaiError as exc:  # one bad file in a folder: say so, explain the others
            if len(paths) == 1:
                raise
            failed.append(path)
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        written = explain_image(
            bundle,
            image.pixels,
            methods,
            args.out,
            target=target,
            seed=args.seed,
            cache=cache,
            stem=path.stem,
            params=settings,
            lungs=segmenter.annotation(image.pixels) if segmenter is not None else None,
        )
        _warn_if_out_of_distribution(segmenter, image.pixels, path)
        for heatmap, npz, png in written:
            lungs = np.load(npz)["lungs"] if segmenter is not None else None
            shares = relevance_shares(
                heatmap.values, None if lungs is None else torch.from_numpy(lungs)
            )
            print(
                f"{heatmap.method:>22s}  {heatmap.target_label:<12s} "
                f"{heatmap.seconds:7.2f} s  {shortcut_caption(shares)}"
                + ("  POSSIBLE SHORTCUT" if shortcut(shares["lung_relevance"]) else "")
                + f"\n{'':>24s}{npz}  {png}"
            )
    if failed:
        print(
            f"error: {len(failed)} of {len(paths)} image(s) could not be read (above); the "
            "others' maps are written.",
            file=sys.stderr,
        )
        return 1
    return 0


def _lung_model(args: argparse.Namespace, bundle):  # -> LungSegmenter | None
    """The lung-field model unless --no-lung-model (explain, evaluate)."""
    if args.no_lung_model:
        return None
    from cxrxai.lungs import LungSegmenter

    return LungSegmenter.load(args.lung_model, device=str(bundle.device))


def cmd_sanity(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cxrxai.evaluation.sanity import cascading_randomisation, verdicts
    from cxrxai.explain.base import resolve_targets
    from cxrxai.explain.params import parse_param_specs
    from cxrxai.imageio import read_image

    methods = _methods(args.methods)
    settings = parse_param_specs(args.param, methods)
    bundle = _load_bundle(args)
    image = read_image(args.image).pixels
    target = _target(args.target)
    (index,) = resolve_targets(bundle, image, target)[:1]
    rows = cascading_randomisation(
        bundle, image, methods, index, args.seed, args.max_groups, params=settings
    )
    print(f"{'method':>22s} {'randomised through':>20s} {'spearman':>9s} {'ssim':>6s}")
    for row in rows:
        print(
            f"{row.method:>22s} {row.randomised_through:>20s} {row.spearman:9.3f} {row.ssim:6.3f}"
        )
    for method, passed in verdicts(rows).items():
        print(
            f"{method}: {'PASS' if passed else 'FAIL'} (map changes when the model is randomised)"
            if passed
            else f"{method}: FAIL (map survives randomisation of the model)"
        )
    if args.csv:
        write_csv(args.csv, [asdict(row) for row in rows])
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from cxrxai.explain.params import parameters
    from cxrxai.explain.registry import list_methods

    for method in list_methods():
        gradients = "gradients" if method["needs_gradients"] else "model-agnostic"
        print(f"{method['name']:>22s}  [{gradients}]  {method['description']}")
        for param in parameters(method["name"]):
            rule, options = param, ""
            if rule.choices or rule.suggestions:
                options = f"; {'one of' if rule.choices else 'e.g.'} "
                options += ", ".join(rule.choices or rule.suggestions or ())
            default = "auto" if param.default is None else param.default
            print(
                f"{'':>24s}--param {method['name']}.{param.name}=...  "
                f"(default {default}{options}): {param.help}"
            )
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from cxrxai.explain.cam import candidate_layers

    bundle = _load_bundle(args)
    print(f"{'layer':<40s} {'channels':>8s} {'height':>6s} {'width':>6s}")
    for name, channels, height, width in candidate_layers(bundle):
        default = "  (model card default)" if name == bundle.card.target_layer else ""
        print(f"{name:<40s} {channels:8d} {height:6d} {width:6d}{default}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cxrxai.imageio import read_image

    image = read_image(args.image)
    print(json.dumps(asdict(image.meta), indent=2, default=str))
    return 0


def cmd_import_xrv(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cxrxai.checkpoint import file_sha256, load_xrv_weights, save_checkpoint

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CxrxaiError(f"'{args.out}' already exists and is not empty; choose a new folder.")
    labels = _names(args.labels) if args.labels else None
    bundle = load_xrv_weights(
        args.weights, args.architecture, labels, device="cpu", trust_pickle=args.trust_pickle
    )
    card = replace(
        bundle.card,
        notes=(
            f"Imported from the torchxrayvision weights file {args.weights.name} (sha256 "
            f"{file_sha256(args.weights)[:16]}) with `python -m cxrxai import-xrv`. "
            "Operating thresholds are 0.5 until set under 'thresholds' in this card."
        ),
    )
    save_checkpoint(bundle.model, card, args.out)
    print(
        f"checkpoint written to {args.out} ({card.architecture}, {len(card.labels)} labels); "
        f"open it with --checkpoint {args.out} or on the Model page"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cxrxai.evaluation.evaluate import Evaluator, Settings, run_in_process
    from cxrxai.evaluation.store import LOCALISATION, export_csv, open_results, record_run
    from cxrxai.explain.cache import HeatmapCache
    from cxrxai.explain.params import parse_param_specs, variant
    from cxrxai.explain.registry import get_explainer

    external = None
    if args.heatmaps is not None or args.method_name:
        from cxrxai.explain.external import ExternalMaps

        if args.heatmaps is None or not args.method_name:
            raise CxrxaiError("--heatmaps and --method-name go together: the folder and a name.")
        external = ExternalMaps(args.heatmaps, args.method_name)
        methods, method_params = [external.name], {}
    else:
        methods = _methods(args.methods)
        method_params = parse_param_specs(args.param, methods)
        for name in methods:
            get_explainer(name, **method_params.get(name, {}))  # fail before any work
    from cxrxai.datasets.registry import shard_cases

    engine = _engine(args)  # before any work: Ray missing or a bad option is said at once
    root = data_root(args.data_root)
    cases = _cases_for(
        args.dataset,
        args.split,
        root,
        args.limit,
        args.classes,
        args.manifest_anywhere,
        args.images,
        args.sample,
        args.seed,
    )
    cases = shard_cases(cases, args.shard)
    if engine is not None:
        # the driver only plans and writes; the workers' device follows --gpus-per-worker,
        # and a driver model on a GPU would take memory the workers there need
        args.device = "cpu"
    bundle = _load_bundle(args)
    segmenter = _lung_model(args, bundle)
    db_path = args.db or settings.results_path()
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
    run_settings = Settings(
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
        run_settings,
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


def cmd_study(args: argparse.Namespace) -> int:
    from cxrxai.study import analysis, service
    from cxrxai.study.db import connect

    path = args.db or settings.study_path()
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
        password = settings.admin_password_from_env()
        if not password:
            raise CxrxaiError("Set CXRXAI_ADMIN_PASSWORD to the study admin password.")
        root = data_root(args.data_root)
        wanted = _names(args.classes) if args.classes else []
        refs = [
            service.CaseRef(
                c.case_id,
                c.dataset,
                c.split,
                next((x for x in c.labels if x in wanted), c.labels[0]),
            )
            for c in _cases_for(
                args.dataset, args.split, root, args.limit, args.classes, args.manifest_anywhere
            )
            if c.labels
        ]
        code = service.create_study(
            db,
            password,
            args.name,
            refs,
            _methods(args.methods, variants=True),
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
            _load_bundle(args),
            data_root(args.data_root),
            keep_going=lambda: _starter_alive(args.parent_pid),
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
        return 0
    rows = analysis.ratings(db, study["id"])
    print(f"{len(rows)} ratings in study {study['code']} ({study['mode']})")
    for by in ("method", "target"):
        for entry in analysis.summary(rows, by):
            print(
                f"{by} {entry[by]}: n={entry['n']} "
                + ", ".join(
                    f"{s} {entry[s + '_mean']:.2f} [{entry[s + '_ci'][0]:.2f}, "
                    f"{entry[s + '_ci'][1]:.2f}] median {entry[s + '_median']:.1f}"
                    for s in service.SCORES
                )
            )
    print(f"Krippendorff's alpha (trust, ordinal): {analysis.krippendorff_alpha(rows):.3f}")
    print(f"ICC(2,1) (trust): {analysis.icc_2_1(rows):.3f}")
    changes = analysis.decision_changes(rows)
    if changes["n"]:
        print(
            f"Decisions ({changes['n']} reads before and after the explanations): agree with "
            f"the model {changes['agree_before']:.2f} -> {changes['agree_after']:.2f}; changed "
            f"{changes['changed']:.2f} [{changes['changed_ci'][0]:.2f}, "
            f"{changes['changed_ci'][1]:.2f}] ({changes['to_agree']} to agree, "
            f"{changes['to_disagree']} to disagree)"
        )
    from cxrxai.study.mrmc import describe, reader_study
    from cxrxai.study.sham import sham_comparison

    mrmc = reader_study(rows)
    if mrmc["n_reads"]:  # the study asked for confidences
        print(describe(mrmc))
        for entry in mrmc.get("left_out", []):
            print(f"  left out: {entry['reader']} ({entry['read']})")
    for entry in analysis.informative_plausibility(rows):
        print(
            f"G4 {entry['method']}: trust when the model is right {entry['trust right']:.2f} "
            f"(n={entry['n right']}) vs wrong {entry['trust wrong']:.2f} "
            f"(n={entry['n wrong']}), AUC {entry['trust AUC']:.3f}"
        )
    for entry in sham_comparison(rows):
        print(
            f"Sham {entry['method']}: trust real {entry['trust real']:.2f} vs sham "
            f"{entry['trust sham']:.2f}, difference {entry['difference']:.2f} "
            f"{entry['difference CI']}"
        )
    staged = analysis.staged_decisions(rows)
    if staged:
        stages = [
            ("image alone", "matches_model_image_alone"),
            ("with the model's label", "agrees_with_model_label_shown"),
            ("with the explanations", "agrees_with_model_explanations_shown"),
        ]
        print(
            "Staged reveal, share matching the model: "
            + "; ".join(f"{name} {staged[key]['mean']:.2f}" for name, key in stages if staged[key])
        )
    marks = analysis.reader_marks(db, study["id"])
    if marks:
        located = analysis.marks_summary(rows, marks)
        reference = located["iou_with_reference"]
        print(
            f"Reader marks: {located['marks']}; IoU with the reference "
            + (f"{reference['mean']:.2f}" if reference else "n/a")
            + "; with each panel's top-10 % region: "
            + ", ".join(f"{m} {e['mean']:.2f}" for m, e in located["iou_with_panel_region"].items())
        )
    if args.results:
        from cxrxai.evaluation.browse import unit_values
        from cxrxai.evaluation.store import open_results

        rho = analysis.trust_vs_metric(rows, unit_values(open_results(args.results)))
        print(
            f"Spearman(trust, IoU top 10 %): {rho['rho']:.3f} "
            f"[{rho['low']:.3f}, {rho['high']:.3f}], n={rho['n']}"
        )
    return 0


def _starter_alive(parent_pid: int | None) -> bool:
    """Whether the process that started this one (``--parent-pid``) still runs: once it
    has ended, this process has another parent. Always true without ``--parent-pid``."""
    return parent_pid is None or os.getppid() == parent_pid


def cmd_precompute_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cxrxai.demo import demo_bundle, evaluate_demo, precompute_demo

    methods = tuple(_methods(args.methods))
    root = data_root(args.data_root)
    bundle = demo_bundle()  # one load for both steps

    def keep_going() -> bool:  # asked before each map: LIME or SHAP can take minutes
        if _starter_alive(args.parent_pid):
            return True
        print("the process that started this has ended: stopping", file=sys.stderr)
        return False

    def progress(items):
        return tqdm(items, desc="demo cases", unit="case")

    count = precompute_demo(methods, root, progress, bundle, keep_going)
    if not _starter_alive(args.parent_pid):
        return 0
    print(f"{count} explanation(s) computed and cached")
    if args.maps_only:
        return 0
    path = settings.demo_results_path()
    summary = evaluate_demo(methods, root, path, bundle)
    if summary.units_done or summary.units_skipped:
        print(
            f"Demo evaluation: {summary.units_done} case x method unit(s) scored, "
            f"{summary.units_skipped} already in {path}"
        )
    else:
        print("Demo evaluation: no demo case has a label of the demo model (no data root?)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cxrxai.evaluation.report import write_report
    from cxrxai.evaluation.store import open_results

    db_path = args.db or settings.results_path()
    if not db_path.is_file():
        raise CxrxaiError(f"Results database '{db_path}' not found; run 'evaluate' first.")
    path = write_report(open_results(db_path), args.out, args.mode, args.value)
    print(f"report written to {path}")
    return 0


def cmd_merge_results(args: argparse.Namespace) -> int:
    from cxrxai.evaluation.store import merge_results, open_results

    missing = [str(path) for path in args.shards if not path.is_file()]
    if missing:
        raise CxrxaiError(f"Results database(s) not found: {', '.join(missing)}.")
    added = merge_results(open_results(args.out), args.shards)
    print(
        f"{added['localisation']} localisation, {added['faithfulness']} faithfulness and "
        f"{added['runs']} run row(s) added to {args.out} from {len(args.shards)} database(s)"
    )
    return 0


COMMANDS = {
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "merge-results": cmd_merge_results,
    "study": cmd_study,
    "precompute-demo": cmd_precompute_demo,
    "train": cmd_train,
    "train-lungs": cmd_train_lungs,
    "calibrate-ood": cmd_calibrate_ood,
    "evaluate-model": cmd_evaluate_model,
    "predict": cmd_predict,
    "info": cmd_info,
    "import-xrv": cmd_import_xrv,
    "explain": cmd_explain,
    "methods": cmd_methods,
    "layers": cmd_layers,
    "sanity": cmd_sanity,
}
