"""Datasets by name, as the CLI reaches them: CheXlocalize and VinDr-CXR files, and a
random sample per class that the seed reproduces."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from cxrxai.cases import Case
from cxrxai.datasets.registry import load_split_cases, sample_cases
from cxrxai.errors import DatasetError


def _cases(counts: dict[str, int]) -> list[Case]:
    return [
        Case(f"d/{label}/{i:03d}", f"{label}{i}.png", [label])
        for label, n in counts.items()
        for i in range(n)
    ]


def test_a_random_sample_per_class_reproducible_by_seed():
    cases = _cases({"A": 50, "B": 30, "C": 3})
    first = sample_cases(cases, 10, seed=1)
    assert [c.case_id for c in first] == [c.case_id for c in sample_cases(cases[::-1], 10, 1)]
    by_class = {label: sum(c.labels == [label] for c in first) for label in "ABC"}
    assert by_class == {"A": 10, "B": 10, "C": 3}  # all of a smaller class
    assert first != sample_cases(cases, 10, seed=2)
    assert first != cases[:10] + cases[50:60]  # not the first N
    with pytest.raises(DatasetError, match="at least 1"):
        sample_cases(cases, 0)


def test_chexlocalize_and_vindr_by_name(tmp_path):
    square = [[[2, 3], [9, 3], [9, 7], [2, 7]]]
    annotations = {
        "patient1_study1_view1_frontal": {"img_size": [12, 16], "Edema": square},
        "patient2_study1_view1_frontal": {"img_size": [12, 16], "Edema": []},
    }
    (tmp_path / "chexlocalize").mkdir()
    json_path = tmp_path / "chexlocalize" / "gt_annotations_val.json"
    json_path.write_text(json.dumps(annotations))
    by_path = load_split_cases("chexlocalize", str(json_path), tmp_path)
    by_name = load_split_cases("chexlocalize", "gt_annotations_val", tmp_path)
    assert [c.case_id for c in by_path] == [c.case_id for c in by_name]
    assert by_path[0].labels == ["Edema"] and by_path[0].dataset == "chexlocalize"
    images = tmp_path / "chexpert"
    moved = load_split_cases("chexlocalize", str(json_path), tmp_path, images=images)
    assert moved[0].image_path.is_relative_to(images)
    vindr_csv = files("torchxrayvision") / "data" / "vinbigdata-train.csv.gz"
    vindr = load_split_cases("vindr", str(vindr_csv), tmp_path, sample_per_class=2, seed=0)
    assert 2 <= len(vindr) <= 2 * 15 and all(c.dataset == "vindr-cxr" for c in vindr)
    with pytest.raises(DatasetError, match="not found: pass the file's path as --split"):
        load_split_cases("vindr", "nosuch", tmp_path)


def test_shards_partition_the_cases():
    from cxrxai.datasets.registry import shard_cases

    cases = [Case(f"toy/{i}", f"x{i}.png", ["sick"], [], "toy", "test") for i in range(40)]
    parts = [shard_cases(cases, f"{k}/3") for k in (1, 2, 3)]
    ids = [c.case_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.case_id for c in cases) and len(set(ids)) == 40
    assert all(parts)  # 40 cases: every shard gets some
    assert shard_cases(cases[:10], "2/3") == [c for c in parts[1] if c in cases[:10]]
    assert shard_cases(cases, None) == cases
    for bad in ("0/3", "4/3", "a/b", "3"):
        with pytest.raises(DatasetError, match="K/N"):
            shard_cases(cases, bad)


def test_find_case_reopens_cases_by_their_dataset_field(tmp_path):
    """Results and studies store ``Case.dataset`` ("vindr-cxr", "nih-bbox"), which is not
    the CLI's name ("vindr", "nih"): a case must be found again by it (Review reopening a
    Cases-page row, a study preparing its cases)."""
    from cxrxai.datasets.registry import FORMATS, dataset_format, find_case

    (tmp_path / "vindr").mkdir()
    vindr_csv = files("torchxrayvision") / "data" / "vinbigdata-train.csv.gz"
    (tmp_path / "vindr" / "train.csv.gz").symlink_to(Path(str(vindr_csv)))
    square = [[[2, 3], [9, 3], [9, 7], [2, 7]]]
    (tmp_path / "chexlocalize").mkdir()
    (tmp_path / "chexlocalize" / "gt_val.json").write_text(
        json.dumps({"patient1_study1_view1_frontal": {"img_size": [12, 16], "Edema": square}})
    )
    for name, split in (("vindr", "train"), ("chexlocalize", "gt_val")):
        case = load_split_cases(name, split, tmp_path, limit_per_class=1)[-1]
        assert case.dataset == FORMATS[name].case_dataset
        found = find_case(case.dataset, case.split, case.case_id, tmp_path)
        assert found is not None and found.case_id == case.case_id, name
        kept = [(a.kind, a.label, a.author, a.box) for a in found.annotations]
        assert kept == [(a.kind, a.label, a.author, a.box) for a in case.annotations]
    assert dataset_format("nih-bbox") is FORMATS["nih"] is dataset_format("nih")
    assert find_case("vindr-cxr", "train", "vindr-cxr/no-such-image", tmp_path) is None
    assert find_case("manifest", "x.csv", "any", tmp_path) is None
    assert find_case("no-such-dataset", "Val", "any", tmp_path) is None
    with pytest.raises(DatasetError, match="Unknown dataset 'mnist'"):
        load_split_cases("mnist", "Val", tmp_path)
