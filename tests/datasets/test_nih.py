"""NIH BBox_List_2017 loader: real CSV and images, boxes scaled from 1024 px."""

from __future__ import annotations

import csv

import pytest

from cxrxai.datasets.nih import load_nih_bbox, read_bbox_rows
from cxrxai.errors import DatasetError


@pytest.fixture(scope="module")
def nih_cases(nih_root):
    return load_nih_bbox(nih_root)


def test_counts_match_the_subset(nih_cases):
    assert len(nih_cases) == 348
    assert sum(len(c.annotations) for c in nih_cases) == 415
    findings = {a.label for c in nih_cases for a in c.annotations}
    assert findings == {
        "Atelectasis",
        "Cardiomegaly",
        "Effusion",
        "Infiltrate",
        "Mass",
        "Nodule",
        "Pneumonia",
        "Pneumothorax",
    }


def test_boxes_scaled_to_the_512px_images(nih_root, nih_cases):
    rows = {}
    with open(nih_root / "BBox_List_2017.csv", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            rows.setdefault(row[0], []).append([float(v) for v in row[2:6]])
    case = nih_cases[0]
    image = case.load_image()
    assert image.shape == (512, 512)
    x, y, w, h = rows[case.image_path.name][0]
    assert case.annotations[0].box == pytest.approx((x / 2, y / 2, (x + w) / 2, (y + h) / 2))
    for c in nih_cases:
        for a in c.annotations:
            x0, y0, x1, y1 = a.box
            assert 0 <= x0 < x1 <= 512.5 and 0 <= y0 < y1 <= 512.5


def test_full_official_list_parses(tmp_path):
    from importlib.resources import files

    path = files("torchxrayvision") / "data" / "BBox_List_2017.csv.gz"
    rows = read_bbox_rows(path)
    assert len(rows) == 984  # the official list
    cases = load_nih_bbox(tmp_path.parent, csv_name=str(path), only_present=False)
    assert len(cases) == 880
    with pytest.raises(Exception, match="file not found"):
        cases[0].load_image()


def test_bad_csv_is_clear(tmp_path):
    (tmp_path / "BBox_List_2017.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="header"):
        load_nih_bbox(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        load_nih_bbox(tmp_path / "nowhere")


def test_patient_wise_splits(nih_root):
    from cxrxai.datasets.nih import nih_split
    from cxrxai.datasets.registry import load_split_cases

    splits = {
        name: load_split_cases("nih", name, nih_root.parent) for name in ("train", "val", "test")
    }
    everything = load_split_cases("nih", "all", nih_root.parent)
    ids = [c.case_id for cases in splits.values() for c in cases]
    assert sorted(ids) == sorted(c.case_id for c in everything)  # a partition
    patients = {
        name: {c.case_id.split("/")[-1].split("_")[0] for c in cases}
        for name, cases in splits.items()
    }
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"])
    assert not patients["val"] & patients["test"]
    assert [len(splits[n]) for n in ("train", "val", "test")] == [187, 76, 85]
    for name, cases in splits.items():
        assert {c.labels[0] for c in cases} >= {"Effusion", "Nodule"}, name
    assert nih_split("nih-bbox/00000004_000") == "train"
    assert nih_split("nih-bbox/00000007_000") == "test"
