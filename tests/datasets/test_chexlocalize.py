"""CheXlocalize loader. The release itself is not available here, so small files in
its two published formats are written by the test; polygon and RLE paths must agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from cxrxai.datasets.chexlocalize import (
    chexpert_image_path,
    load_chexlocalize,
    polygons_to_mask,
)
from cxrxai.errors import DatasetError

CXR_ID = "patient64541_study1_view1_frontal"
SQUARE = [[[2, 3], [9, 3], [9, 7], [2, 7]]]  # x 2..9, y 3..7 inclusive: 8 x 5 = 40 px


def test_polygon_fill_known_area():
    mask = polygons_to_mask(SQUARE, (12, 16))
    assert mask.sum() == 40
    assert mask[3:8, 2:10].all()


def test_annotation_and_segmentation_files_agree(tmp_path):
    truth = polygons_to_mask(SQUARE, (12, 16))
    rle = coco_mask.encode(np.asfortranarray(truth.astype(np.uint8)))
    empty = coco_mask.encode(np.asfortranarray(np.zeros((12, 16), np.uint8)))
    annotations = {CXR_ID: {"img_size": [12, 16], "Cardiomegaly": SQUARE, "Edema": []}}
    segmentations = {
        CXR_ID: {
            "Cardiomegaly": {"size": [12, 16], "counts": rle["counts"].decode()},
            "Edema": {"size": [12, 16], "counts": empty["counts"].decode()},
        }
    }
    (tmp_path / "gt_annotations_val.json").write_text(json.dumps(annotations))
    (tmp_path / "gt_segmentations_val.json").write_text(json.dumps(segmentations))
    for name in ("gt_annotations_val.json", "gt_segmentations_val.json"):
        (case,) = load_chexlocalize(tmp_path / name, split="val")
        assert case.labels == ["Cardiomegaly"]
        masks = {a.label: a.load_mask() for a in case.annotations}
        np.testing.assert_array_equal(masks["Cardiomegaly"], truth)
        assert masks["Edema"].shape == (12, 16) and not masks["Edema"].any()
        assert case.image_path == tmp_path / "patient64541" / "study1" / "view1_frontal.jpg"


def test_uncompressed_rle_counts(tmp_path):
    data = {CXR_ID: {"Edema": {"size": [4, 4], "counts": [5, 3, 8]}}}
    (tmp_path / "seg.json").write_text(json.dumps(data))
    (case,) = load_chexlocalize(tmp_path / "seg.json")
    assert case.annotations[0].load_mask().sum() == 3


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="Cannot read CheXlocalize"):
        load_chexlocalize(tmp_path / "bad.json")
    (tmp_path / "nosize.json").write_text(json.dumps({CXR_ID: {"Edema": SQUARE}}))
    with pytest.raises(DatasetError, match="img_size"):
        load_chexlocalize(tmp_path / "nosize.json")


def test_chexpert_path_layout(tmp_path):
    assert chexpert_image_path(tmp_path, CXR_ID).parts[-3:] == (
        "patient64541",
        "study1",
        "view1_frontal.jpg",
    )
