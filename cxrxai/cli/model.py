"""Data and models: a checkpoint's classification metrics, one image's probabilities and
metadata, torchxrayvision weights as a checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cxrxai.cli.common import (
    add_data_root,
    add_device,
    add_lung_model,
    add_model_args,
    cases_for,
    load_bundle,
    lung_model,
    parse_names,
    warn_if_out_of_distribution,
)
from cxrxai.cli.pacs import add_pacs_source, image_paths
from cxrxai.environment import data_root
from cxrxai.errors import CxrxaiError


def add_evaluate_model(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate-model", help="classification metrics of a checkpoint on any split"
    )
    evaluate.add_argument("--checkpoint", required=True, type=Path)
    evaluate.add_argument("--dataset", default="covid-qu-ex")
    evaluate.add_argument("--split", default="Val", help="split name, folder or manifest")
    evaluate.add_argument("--out", type=Path, help="write the metrics as JSON here")
    evaluate.add_argument("--limit", type=int, default=None)
    add_data_root(evaluate)
    add_device(evaluate)
    evaluate.set_defaults(run=cmd_evaluate_model)


def cmd_evaluate_model(args: argparse.Namespace) -> int:
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.training.train import evaluate_split, load_split, predict_split

    bundle = load_checkpoint(args.checkpoint, args.device)
    cases = cases_for(
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


def add_predict(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="probabilities of an image (or a PACS's)")
    predict.add_argument("image", type=Path, nargs="?", help="an image file (or --dataset pacs)")
    add_lung_model(predict)
    add_model_args(predict)
    add_pacs_source(predict)
    predict.set_defaults(run=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrxai.imageio import read_image

    paths = image_paths(args, lambda image: [image])
    bundle = load_bundle(args)
    segmenter = lung_model(args, bundle)
    for path in paths:
        pixels = read_image(path).pixels
        probs = bundle.predict_proba(pixels)[0]
        if len(paths) > 1:
            print(path.stem)
        for label, p in sorted(zip(bundle.labels, probs, strict=False), key=lambda item: -item[1]):
            print(f"{label:>24s}  {p:.4f}")
        warn_if_out_of_distribution(segmenter, pixels, path)
    return 0


def add_import_xrv(commands: argparse._SubParsersAction) -> None:
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
    xrv.set_defaults(run=cmd_import_xrv)


def cmd_import_xrv(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cxrxai.checkpoint import file_sha256, load_xrv_weights, save_checkpoint

    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CxrxaiError(f"'{args.out}' already exists and is not empty; choose a new folder.")
    labels = parse_names(args.labels) if args.labels else None
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


def add_info(commands: argparse._SubParsersAction) -> None:
    info = commands.add_parser("info", help="metadata of an image (no patient identifiers)")
    info.add_argument("image", type=Path)
    info.set_defaults(run=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cxrxai.imageio import read_image

    image = read_image(args.image)
    print(json.dumps(asdict(image.meta), indent=2, default=str))
    return 0
