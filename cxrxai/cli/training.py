"""Training: fine-tune a classifier, train the lung-field model, fit the out-of-distribution
check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrxai import environment
from cxrxai.cli.common import (
    add_data_root,
    add_device,
    cases_for,
)
from cxrxai.environment import data_root
from cxrxai.errors import CxrxaiError


def add_train(commands: argparse._SubParsersAction) -> None:
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
    add_data_root(train)
    add_device(train)
    train.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from cxrxai.datasets.covidqu import CLASSES
    from cxrxai.training.train import TrainConfig, train

    root = data_root(args.data_root)
    anywhere = args.manifest_anywhere
    train_cases = cases_for(args.dataset, args.train, root, args.limit, None, anywhere)
    val_cases = cases_for(args.dataset, args.val, root, args.limit, None, anywhere)
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


def add_train_lungs(commands: argparse._SubParsersAction) -> None:
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
    add_data_root(lungs)
    add_device(lungs)
    lungs.set_defaults(run=cmd_train_lungs)


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
    model, summary = train_lung_model(*splits, config, environment.pick_device(args.device))
    card = write_lung_checkpoint(model, summary, splits[1], args.out)
    print(f"{args.out}: Dice on Val {card.validation_metrics['dice_mean']}")
    return 0


def add_calibrate_ood(commands: argparse._SubParsersAction) -> None:
    ood = commands.add_parser(
        "calibrate-ood",
        help="fit the out-of-distribution check beside the lung-field model",
        description="Feature statistics of the lung-field model on three quarters of "
        "COVID-QU-Ex Train, thresholds on the other quarter within a false-alarm budget, "
        "and the false-alarm rate on Val, which neither saw (the rate to expect); written "
        "as ood.safetensors into the lung model's folder (docs/lungs.md).",
    )
    ood.add_argument("--lung-model", type=Path, help="default: the bundled lung-field model")
    ood.add_argument(
        "--budget",
        type=float,
        default=0.02,
        help="largest false-alarm share on the calibration quarter of Train",
    )
    add_data_root(ood)
    ood.set_defaults(run=cmd_calibrate_ood)


def cmd_calibrate_ood(args: argparse.Namespace) -> int:
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.lungs import LungSegmenter
    from cxrxai.training.ood_fit import (
        calibration_split,
        false_alarms,
        features_and_shapes,
        fit_ood,
    )

    if not 0.0 < args.budget < 0.5:
        raise CxrxaiError(f"--budget must be between 0 and 0.5, got {args.budget}")
    segmenter = LungSegmenter.load(args.lung_model)
    root = data_root(args.data_root) / "covid-qu-ex"
    fit_cases, calibration_cases = calibration_split(load_covid_qu_ex(root / "Train"))
    fit, _ = features_and_shapes(segmenter, fit_cases)
    calibration, calibration_shapes = features_and_shapes(segmenter, calibration_cases)
    stats = fit_ood(fit, calibration, calibration_shapes, args.budget)
    held_out, held_out_shapes = features_and_shapes(segmenter, load_covid_qu_ex(root / "Val"))
    warned, (low, high) = false_alarms(stats, held_out, held_out_shapes)
    rate = warned / len(held_out_shapes)
    stats.provenance["val_images"] = str(len(held_out_shapes))
    stats.provenance["val_false_alarms"] = f"{warned} ({rate:.2%}, 95 % CI {low:.2%}-{high:.2%})"
    path = stats.save(segmenter.folder)
    print(
        f"{path}: distance threshold {stats.distance_threshold:.2f}, lung area "
        f"{stats.area_range[0]:.3f}-{stats.area_range[1]:.3f}; false alarms on the "
        f"calibration quarter of Train {stats.provenance['calibration_false_alarms']}, on "
        f"Val (held out: the rate to expect) {stats.provenance['val_false_alarms']}"
    )
    return 0
