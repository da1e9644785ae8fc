"""Datasets by name, as the CLI reaches them: CheXlocalize and VinDr-CXR files, and a
random sample per class that the seed reproduces."""

from __future__ import annotations

import json
from importlib.resources import files

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
