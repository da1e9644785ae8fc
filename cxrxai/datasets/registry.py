"""Resolve a (dataset, split) pair from the CLI or UI to a list of cases."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrxai.cases import Case
from cxrxai.datasets.chexlocalize import load_chexlocalize
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.datasets.manifest import load_manifest
from cxrxai.datasets.nih import NIH_SPLITS, load_nih_bbox, nih_split
from cxrxai.datasets.vindr import load_vindr
from cxrxai.errors import DatasetError
from cxrxai.pacs.cases import cached_cases


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset format the CLI and pages name (``--dataset NAME``): how a split of it is
    read, and the ``Case.dataset`` its cases carry (results and studies store that one)."""

    name: str
    case_dataset: str
    read: Callable[[str, Path, bool, Path | None], list[Case]]


def _covid_qu_ex(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    path = Path(split)
    return load_covid_qu_ex(path if path.is_dir() else root / "covid-qu-ex" / split)


def _nih(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    path = Path(split)
    cases = load_nih_bbox(path if path.is_dir() else root / "nih-bbox")
    if split in NIH_SPLITS:  # cxrxai's patient-wise split; any other name: every case
        cases = [c for c in cases if nih_split(c.case_id) == split]
    return cases


def _manifest(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    return load_manifest(Path(split), root, anywhere)


def _chexlocalize(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    path = _file(split, root / "chexlocalize", (".json",), "CheXlocalize JSON")
    return load_chexlocalize(path, images, split=path.stem)


def _vindr(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    path = _file(split, root / "vindr", (".csv", ".csv.gz"), "VinDr-CXR annotation CSV")
    return load_vindr(path, images)


def _pacs(split: str, root: Path, anywhere: bool, images: Path | None) -> list[Case]:
    return cached_cases(split)  # the study's instances fetched before (no network)


FORMATS: dict[str, DatasetFormat] = {
    f.name: f
    for f in (
        DatasetFormat("covid-qu-ex", "covid-qu-ex", _covid_qu_ex),
        DatasetFormat("nih", "nih-bbox", _nih),
        DatasetFormat("manifest", "manifest", _manifest),
        DatasetFormat("chexlocalize", "chexlocalize", _chexlocalize),
        DatasetFormat("vindr", "vindr-cxr", _vindr),
        DatasetFormat("pacs", "pacs", _pacs),
    )
}
DATASETS = tuple(FORMATS)
# a case's dataset field -> the format that reads it (the one home of the two spellings)
_BY_CASE_DATASET = {f.case_dataset: f for f in FORMATS.values()}


def dataset_format(name: str) -> DatasetFormat:
    """The format named ``name``: as the CLI spells it (``nih``) or as its cases' ``dataset``
    field does (``nih-bbox``)."""
    found = FORMATS.get(name) or _BY_CASE_DATASET.get(name)
    if found is None:
        raise DatasetError(f"Unknown dataset '{name}'; choose one of {list(DATASETS)}")
    return found


def load_split_cases(
    dataset: str,
    split: str,
    root: Path,
    limit_per_class: int | None = None,
    manifest_anywhere: bool = False,
    images: Path | None = None,
    sample_per_class: int | None = None,
    seed: int = 0,
) -> list[Case]:
    """``split`` is a split name under the dataset's folder in ``root``, or a path (for
    CheXlocalize its JSON file, for VinDr-CXR its annotation CSV; ``images``: where their
    images are, by default beside the file). ``dataset``: a format's name or its cases'
    ``dataset`` field (:func:`dataset_format`). ``manifest_anywhere``: a manifest's paths may
    lead outside its folder and ``root``. ``limit_per_class`` keeps the first N per class,
    ``sample_per_class`` a random N per class (reproducible with ``seed``)."""
    cases = dataset_format(dataset).read(split, root, manifest_anywhere, images)
    if sample_per_class:
        return sample_cases(cases, sample_per_class, seed)
    return limit_cases(cases, limit_per_class)


def _file(split: str, folder: Path, suffixes: tuple[str, ...], what: str) -> Path:
    """``split`` as a file, else as a name in the dataset's folder of the data root."""
    path = Path(split)
    if path.is_file():
        return path
    for suffix in suffixes:
        named = folder / f"{split}{suffix}"
        if named.is_file():
            return named
    raise DatasetError(
        f"{what} '{split}' not found: pass the file's path as --split, or put it in "
        f"'{folder}' (as {split}{suffixes[0]})."
    )


def sample_cases(cases: list[Case], per_class: int, seed: int = 0) -> list[Case]:
    """A random ``per_class`` cases of each first label (all of a smaller class), the same
    for the same seed and cases; returned in case-id order."""
    if per_class < 1:
        raise DatasetError(f"--sample must be at least 1, got {per_class}")
    by_class: dict[str, list[Case]] = defaultdict(list)
    for case in sorted(cases, key=lambda c: c.case_id):
        by_class[case.labels[0] if case.labels else ""].append(case)
    rng = np.random.default_rng(seed)
    kept: list[Case] = []
    for label in sorted(by_class):
        pool = by_class[label]
        picks = rng.choice(len(pool), size=min(per_class, len(pool)), replace=False)
        kept += [pool[i] for i in sorted(picks)]
    return sorted(kept, key=lambda c: c.case_id)


def limit_cases(cases: list[Case], limit_per_class: int | None) -> list[Case]:
    """The first ``limit_per_class`` cases of each first label (all when None)."""
    if not limit_per_class:
        return cases
    counts: dict[str, int] = defaultdict(int)
    kept = []
    for case in cases:
        key = case.labels[0] if case.labels else ""
        if counts[key] < limit_per_class:
            counts[key] += 1
            kept.append(case)
    return kept


def find_case(dataset: str, split: str, case_id: str, root: Path) -> Case | None:
    """One case by id (the Cases page opening a result in the Review page); ``dataset``
    is a case's ``dataset`` field. None when it cannot be found under ``root``."""
    try:
        if dataset_format(dataset).name == "manifest":  # its file is not known here
            return None
        cases = load_split_cases(dataset, split, root)
    except DatasetError:
        return None
    for case in cases:
        if case.case_id == case_id:
            return case
    return None


def shard_cases(cases: list[Case], shard: str | None) -> list[Case]:
    """The cases of shard ``"K/N"`` (K in 1..N): those whose id hashes to K, so each case
    belongs to one shard whatever else the split holds. None: all cases."""
    if shard is None:
        return cases
    k, _, n = shard.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise DatasetError(f"--shard '{shard[:20]}': write K/N with 1 <= K <= N, e.g. 2/4.")

    def _bucket(case: Case) -> int:
        return int(hashlib.sha256(case.case_id.encode()).hexdigest()[:12], 16) % int(n)

    return [case for case in cases if _bucket(case) == int(k) - 1]
