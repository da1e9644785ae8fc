"""What the command groups share: the options several commands take (data root, model,
method settings, lung model, device), parsing of their values, loading the model and
the cases. Imports of the heavy library stay inside the functions (a fast ``--help``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cxrxai.environment import DATA_ENV_VAR
from cxrxai.errors import CxrxaiError


def add_data_root(parser: argparse.ArgumentParser) -> None:
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


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="checkpoint folder (default: the bundled demo)",
    )
    add_device(parser)
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


def load_bundle(args: argparse.Namespace):  # -> ModelBundle; imported lazily (fast --help)
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.environment import DEMO_CHECKPOINT

    return load_checkpoint(
        args.checkpoint or DEMO_CHECKPOINT, args.device, args.precision, args.compile
    )


def parse_target(text: str | None) -> int | str | None:
    """A label name, or an output index when the text is a number."""
    return int(text) if text is not None and text.isdigit() else text


def parse_names(text: str) -> list[str]:
    """Comma-separated names (labels, classes), blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_methods(text: str, variants: bool = False) -> list[str]:
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


def add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.NAME=VALUE",
        help="a method's setting, repeatable: gradcam.layer=blocks.5, lime.n_samples=2000, "
        "lrp.composite=epsilon-gamma-box ('python -m cxrxai methods' lists them)",
    )


def add_lung_model(parser: argparse.ArgumentParser) -> None:
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


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")


def cases_for(
    dataset: str,
    split: str,
    root: Path,
    limit: int | None,
    classes: str | None = None,
    manifest_anywhere: bool = False,
    images: Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    pacs: argparse.Namespace | None = None,
):
    """Cases of a split (first ``limit``, or a random ``sample``, per class), only those
    with one of the comma-separated ``classes`` among their labels when given.
    ``--dataset pacs --url ...`` (``pacs``: the command's arguments) fetches them first."""
    from cxrxai.datasets.registry import limit_cases, load_split_cases, sample_cases

    if dataset == "pacs" and pacs is not None and pacs.url:
        from cxrxai.cli.pacs import pacs_cases_for

        fetched = pacs_cases_for(pacs)
        cases = sample_cases(fetched, sample, seed) if sample else limit_cases(fetched, limit)
    else:
        cases = load_split_cases(
            dataset, split, root, limit, manifest_anywhere, images, sample, seed
        )
    if classes:
        wanted = set(parse_names(classes))
        cases = [c for c in cases if wanted & set(c.labels)]
    return cases


def warn_if_out_of_distribution(segmenter, pixels, name: Path) -> None:
    """Print the out-of-distribution warning of an image to stderr (predict, explain)."""
    if segmenter is None:
        return
    from cxrxai.ood import OodStats, assess

    (report,) = assess(segmenter, OodStats.load(segmenter.folder), [pixels])
    if report.flagged:
        print(f"warning: {name}: {report.message()}", file=sys.stderr)


def lung_model(args: argparse.Namespace, bundle):  # -> LungSegmenter | None
    """The lung-field model unless --no-lung-model (explain, evaluate)."""
    if args.no_lung_model:
        return None
    from cxrxai.lungs import LungSegmenter

    return LungSegmenter.load(args.lung_model, device=str(bundle.device))


def starter_alive(parent_pid: int | None) -> bool:
    """Whether the process that started this one (``--parent-pid``) still runs: once it
    has ended, this process has another parent. Always true without ``--parent-pid``."""
    return parent_pid is None or os.getppid() == parent_pid
