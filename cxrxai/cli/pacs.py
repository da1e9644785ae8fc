"""PACS options and commands: ``--dataset pacs --url ...`` as a source of cases for
explain, predict, evaluate and study creation; ``--to-pacs URL`` to send results back;
``pacs-find`` to see what a search finds (UIDs and sizes, never patient identifiers).
Everything PACS is an optional extra (requirements-pacs.txt), imported when used."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrxai.errors import CxrxaiError

PACS = "pacs"


def add_pacs_source(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    """``--dataset pacs`` (where the command has no --dataset of its own) and the search."""
    group = parser.add_argument_group(
        "PACS source (--dataset pacs; pip install -r requirements-pacs.txt)"
    )
    if dataset:
        group.add_argument(
            "--dataset",
            choices=(PACS,),
            default=None,
            help="take the images from a PACS instead of files (with --url)",
        )
    group.add_argument(
        "--url",
        default=None,
        help="the PACS: http(s)://host:port/dicom-web (DICOMweb) or dicom://AET@host:port "
        "(DIMSE; dicoms:// over DICOM TLS); credentials from $CXRXAI_PACS_USER/"
        "$CXRXAI_PACS_PASSWORD, $CXRXAI_PACS_TOKEN or --pacs-credentials, never in the URL",
    )
    group.add_argument("--study", default=None, help="a Study Instance UID")
    group.add_argument("--accession", default=None, help="an accession number")
    group.add_argument(
        "--modality", default="CR,DX", help="comma-separated modalities kept (default CR,DX)"
    )
    group.add_argument(
        "--pacs-credentials",
        type=Path,
        default=None,
        help='a JSON file {"user": ..., "password": ...} or {"token": ...}',
    )
    group.add_argument(
        "--calling-aet", default="CXRXAI", help="DIMSE: cxrxai's AE title (default CXRXAI)"
    )
    group.add_argument(
        "--pacs-timeout", type=float, default=30.0, help="seconds a PACS request may take"
    )


def add_to_pacs(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("results back to a PACS")
    group.add_argument(
        "--to-pacs",
        default=None,
        metavar="URL",
        help="send each DICOM case's results (SR, SEG of the maps, GSPS of the boxes) to this "
        "PACS, in new series on the image's study",
    )
    group.add_argument(
        "--overlays",
        action="store_true",
        help="with --to-pacs: also a Secondary Capture overlay per map (NOT FOR DIAGNOSIS)",
    )
    group.add_argument(
        "--parametric-maps",
        action="store_true",
        help="with --to-pacs: also a float Parametric Map per map - a research option, not "
        "conformant: a radiograph has no frame of reference, so one is invented "
        "(docs/dicom.md)",
    )
    group.add_argument(
        "--region",
        default="top-percent:10",
        help="with --to-pacs: the region setting MODE[:VALUE] whose boxes and metrics are "
        "sent (default top-percent:10, the Review page's)",
    )


def wants_pacs(args: argparse.Namespace) -> bool:
    return getattr(args, "dataset", None) == PACS


def open_pacs(args: argparse.Namespace, url: str | None):
    """The PACS a command names (``url``), with credentials from the environment/file."""
    from cxrxai.pacs import require

    require()
    from cxrxai.pacs.address import load_credentials, parse_address
    from cxrxai.pacs.connect import open_source

    if not url:
        raise CxrxaiError("--dataset pacs needs --url (the PACS's DICOMweb or DIMSE address).")
    address = parse_address(url, calling_aet=args.calling_aet)
    credentials = load_credentials(args.pacs_credentials)
    return open_source(address, credentials, timeout=args.pacs_timeout)


def query(args: argparse.Namespace):
    from cxrxai.pacs.source import search

    return search(args.study, args.accession, args.modality)


def pacs_cases_for(args: argparse.Namespace) -> list:
    """The cases of ``--url`` ``--study``/``--accession``/``--modality``, fetched (or taken
    from the cache) before any other work, so a PACS that fails leaves nothing half done."""
    from cxrxai.pacs.cases import pacs_cases

    source = open_pacs(args, args.url)
    try:
        return pacs_cases(source, query(args))
    finally:
        source.close()


def image_paths(args: argparse.Namespace, files) -> list[Path]:
    """The images a command works on: its files (``files`` expands folders), or with
    ``--dataset pacs`` the PACS's, fetched into the cache."""
    if wants_pacs(args):
        if args.image:
            raise CxrxaiError("Name image files or --dataset pacs, not both.")
        return [Path(case.image_path) for case in pacs_cases_for(args)]
    if not args.image:
        raise CxrxaiError("Name image files or folders, or take them from a PACS (--dataset pacs).")
    return files(args.image)


def parse_region(text: str) -> tuple[str, float]:
    from cxrxai.metrics.regions import REGION_MODES

    mode, _, value = text.partition(":")
    if mode not in REGION_MODES:
        raise CxrxaiError(f"--region '{text[:30]}': the mode is one of {list(REGION_MODES)}.")
    try:
        return mode, float(value) if value else 0.0
    except ValueError:
        raise CxrxaiError(f"--region '{text[:30]}': the value after ':' is a number.") from None


def check_to_pacs(args: argparse.Namespace) -> None:
    """``--to-pacs`` and ``--region`` checked before any work (the sending comes last)."""
    extras = [
        f"--{n.replace('_', '-')}"
        for n in ("overlays", "parametric_maps")
        if getattr(args, n, False)
    ]
    if extras and not getattr(args, "to_pacs", None):
        verb = "go" if len(extras) > 1 else "goes"
        raise CxrxaiError(
            f"{' and '.join(extras)} {verb} with --to-pacs URL (what to send with the results)."
        )
    if getattr(args, "to_pacs", None):
        from cxrxai.pacs.address import parse_address

        parse_address(args.to_pacs, calling_aet=args.calling_aet)
        parse_region(args.region)
        if getattr(args, "heatmaps", None):
            raise CxrxaiError("--to-pacs sends cxrxai's own maps; it does not go with --heatmaps.")


class ResultSender:
    """Sends one DICOM case's results to ``--to-pacs`` (one connection for the run)."""

    def __init__(self, args: argparse.Namespace, bundle) -> None:
        from cxrxai.evaluation.dicom_results import algorithm

        self.source = open_pacs(args, args.to_pacs)
        self.region = parse_region(args.region)
        self.overlays = args.overlays
        self.parametric_maps = args.parametric_maps
        self.algorithm = algorithm(bundle)
        self.bundle = bundle
        self.sent = 0

    def send(self, path: Path, image, heatmaps, lungs=None) -> int:
        """The objects for ``path`` (a DICOM file) explained by ``heatmaps``, stored; how
        many were sent (explain)."""
        from cxrxai.evaluation.dicom_results import explained_result

        result = explained_result(self.bundle, image, heatmaps, (), lungs, self.region)
        return self._send(path, image, result)

    def send_evaluated(self, evaluator, cases) -> int:
        """Each DICOM case of an evaluation that had a target, as ``evaluator`` scored it
        (evaluate); how many objects were sent."""
        from cxrxai.evaluation.dicom_results import evaluated_result

        sent = 0
        for case in cases:
            explained = evaluated_result(evaluator, case, self.region)
            if explained is not None:
                sent += self._send(Path(case.image_path), *explained)
        return sent

    def _send(self, path: Path, image, result) -> int:
        from cxrxai.pacs.objects import send_results

        pixels = image.pixels if self.overlays else None
        count = send_results(
            self.source, path, result, self.algorithm, pixels, self.parametric_maps
        )
        self.sent += count
        return count

    def close(self) -> None:
        self.source.close()


def add_pacs_find(commands: argparse._SubParsersAction) -> None:
    find = commands.add_parser(
        "pacs-find", help="list what a PACS search finds (UIDs, modality, size; no identifiers)"
    )
    add_pacs_source(find, dataset=False)
    find.set_defaults(run=cmd_pacs_find)


def cmd_pacs_find(args: argparse.Namespace) -> int:
    from dataclasses import replace

    source = open_pacs(args, args.url)
    try:
        wanted = query(args)
        if args.study or args.accession:
            wanted = replace(wanted, modalities=())  # everything on the study
        found = source.find(wanted)
    finally:
        source.close()
    print(f"{'modality':<8s} {'size':>11s}  study / series / instance UID")
    for ref in found:
        size = f"{ref.columns}x{ref.rows}" if ref.rows and ref.columns else "?"
        frames = f" ({ref.frames} frames)" if ref.frames > 1 else ""
        uids = f"{ref.study_uid} / {ref.series_uid} / {ref.sop_uid}"
        print(f"{ref.modality:<8s} {size:>11s}  {uids}{frames}")
    print(f"{len(found)} instance(s)")
    return 0


def add_pacs_cache(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "pacs-cache",
        help="what the cache of instances fetched from a PACS holds; --clear empties it",
    )
    cache.add_argument(
        "--clear",
        action="store_true",
        help="remove every cached instance (they hold patient identifiers); a case is "
        "fetched again when it is next asked for",
    )
    cache.set_defaults(run=cmd_pacs_cache)


def cmd_pacs_cache(args: argparse.Namespace) -> int:
    from cxrxai.environment import PACS_CACHE_ENV_VAR
    from cxrxai.pacs.cache import InstanceCache

    cache = InstanceCache()
    if args.clear:
        print(f"{cache.clear()} instance(s) removed from {cache.root}")
        return 0
    files, size = cache.usage()
    print(
        f"{files} instance(s), {size / 2**20:.1f} MB in {cache.root}; the limit is "
        f"{cache.limit_bytes / 2**20:.0f} MB (${PACS_CACHE_ENV_VAR})"
    )
    return 0
