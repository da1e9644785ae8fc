"""Explanations: maps of images, the methods and their settings, a CAM's layers, the
randomisation check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrxai.cli.common import (
    add_lung_model,
    add_model_args,
    add_params,
    load_bundle,
    lung_model,
    parse_methods,
    parse_target,
    warn_if_out_of_distribution,
)
from cxrxai.cli.pacs import (
    ResultSender,
    add_pacs_source,
    add_to_pacs,
    check_to_pacs,
    image_paths,
)
from cxrxai.csvout import write_csv
from cxrxai.errors import CxrxaiError


def add_explain(commands: argparse._SubParsersAction) -> None:
    explain = commands.add_parser(
        "explain", help="explanation maps and overlays of images (files or folders)"
    )
    explain.add_argument(
        "image", type=Path, nargs="*", help="image files, or folders of them (or --dataset pacs)"
    )
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
    add_lung_model(explain)
    add_params(explain)
    add_model_args(explain)
    add_pacs_source(explain)
    add_to_pacs(explain)
    explain.set_defaults(run=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from cxrxai.explain.cache import HeatmapCache
    from cxrxai.explain.params import parse_param_specs
    from cxrxai.explain.run import explain_image
    from cxrxai.imageio import image_files, read_image
    from cxrxai.metrics.registry import relevance_shares, shortcut, shortcut_caption

    methods = parse_methods(args.methods)
    settings = parse_param_specs(args.param, methods)  # before loading anything
    check_to_pacs(args)
    paths = image_paths(args, image_files)
    stems = [path.stem for path in paths]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise CxrxaiError(
            f"Several images are named {', '.join(twice[:3])}: their maps would overwrite "
            "each other in --out; explain them in separate runs with their own --out."
        )
    bundle = load_bundle(args)
    target = parse_target(args.target)
    cache = None if args.no_cache else HeatmapCache()
    segmenter = lung_model(args, bundle)
    sender = ResultSender(args, bundle) if args.to_pacs else None
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
        lungs = segmenter.annotation(image.pixels) if segmenter is not None else None
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
            lungs=lungs,
        )
        warn_if_out_of_distribution(segmenter, image.pixels, path)
        if sender is not None:
            mask = lungs.to_mask(image.pixels.shape) if lungs is not None else None
            count = sender.send(path, image, [h for h, _, _ in written], lungs=mask)
            print(f"sent {count} DICOM objects for {path.stem} to {sender.source.address}")
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
    if sender is not None:
        sender.close()
    if failed:
        print(
            f"error: {len(failed)} of {len(paths)} image(s) could not be read (above); the "
            "others' maps are written.",
            file=sys.stderr,
        )
        return 1
    return 0


def add_methods(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("methods", help="list the explanation methods and their settings")
    parser.set_defaults(run=cmd_methods)


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


def add_layers(commands: argparse._SubParsersAction) -> None:
    layers = commands.add_parser(
        "layers", help="layers a CAM method can use (name, channels, height, width)"
    )
    add_model_args(layers)
    layers.set_defaults(run=cmd_layers)


def cmd_layers(args: argparse.Namespace) -> int:
    from cxrxai.explain.cam import candidate_layers

    bundle = load_bundle(args)
    print(f"{'layer':<40s} {'channels':>8s} {'height':>6s} {'width':>6s}")
    for name, channels, height, width in candidate_layers(bundle):
        default = "  (model card default)" if name == bundle.card.target_layer else ""
        print(f"{name:<40s} {channels:8d} {height:6d} {width:6d}{default}")
    return 0


def add_sanity(commands: argparse._SubParsersAction) -> None:
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
    add_params(sanity)
    add_model_args(sanity)
    sanity.set_defaults(run=cmd_sanity)


def cmd_sanity(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cxrxai.evaluation.sanity import cascading_randomisation, verdicts
    from cxrxai.explain.base import resolve_targets
    from cxrxai.explain.params import parse_param_specs
    from cxrxai.imageio import read_image

    methods = parse_methods(args.methods)
    settings = parse_param_specs(args.param, methods)
    bundle = load_bundle(args)
    image = read_image(args.image).pixels
    target = parse_target(args.target)
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
