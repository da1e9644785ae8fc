"""Resolve a (dataset, split) pair from the CLI or UI to a list of cases."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from cxrxai.cases import Case
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.datasets.manifest import load_manifest
from cxrxai.datasets.nih import NIH_SPLITS, load_nih_bbox, nih_split
from cxrxai.errors import DatasetError

DATASETS = ("covid-qu-ex", "nih", "manifest")


def load_split_cases(
    dataset: str,
    split: str,
    root: Path,
    limit_per_class: int | None = None,
    manifest_anywhere: bool = False,
) -> list[Case]:
    """``split`` is a split name under the dataset's folder in ``root``, or a path.
    ``manifest_anywhere``: a manifest's paths may lead outside its folder and ``root``."""
    if dataset == "covid-qu-ex":
        path = Path(split)
        split_dir = path if path.is_dir() else root / "covid-qu-ex" / split
        cases = load_covid_qu_ex(split_dir)
    elif dataset == "nih":
        path = Path(split)
        cases = load_nih_bbox(path if path.is_dir() else root / "nih-bbox")
        if split in NIH_SPLITS:  # cxrxai's patient-wise split; any other name: every case
            cases = [c for c in cases if nih_split(c.case_id) == split]
    elif dataset == "manifest":
        cases = load_manifest(Path(split), root, manifest_anywhere)
    else:
        raise DatasetError(f"Unknown dataset '{dataset}'; choose one of {list(DATASETS)}")
    return limit_cases(cases, limit_per_class)


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
    key = {"nih-bbox": "nih"}.get(dataset, dataset)
    if key not in DATASETS or key == "manifest":
        return None
    try:
        cases = load_split_cases(key, split, root)
    except DatasetError:
        return None
    for case in cases:
        if case.case_id == case_id:
            return case
    return None
