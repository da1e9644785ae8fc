"""Reader localisation by hand-drawn 10 x 10 fixtures: the marks' mask, their IoU with the
reference and with a panel's top-10 % region, and their export as a manifest and as
results for a PACS."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from cxrxai.cases import Annotation
from cxrxai.explain.base import Heatmap
from cxrxai.study.marks import (
    MANIFEST_COLUMNS,
    box_tuples,
    manifest_rows,
    marks_mask,
    marks_results,
    score_marks,
)

SHAPE = (10, 10)


def test_the_mask_is_the_union_of_the_boxes_cut_to_the_image():
    mask = marks_mask([(0, 0, 5, 2), (3, 1, 7, 3), (8, 8, 20, 20)], SHAPE)
    # 10 + 8 - 2 shared + the 2 x 2 corner left inside the image
    assert mask.sum() == 10 + 8 - 2 + 4
    assert mask[0, 4] and mask[2, 6] and not mask[2, 7] and mask[9, 9]
    assert marks_mask([], SHAPE).sum() == 0


def _heatmap() -> Heatmap:
    """Ten hot pixels (rows 0-1, columns 0-4) over distinct small values: the top 10 %."""
    values = torch.arange(100, dtype=torch.float32).reshape(SHAPE) / 1000.0
    values[0:2, 0:5] = torch.arange(10, dtype=torch.float32).reshape(2, 5) + 1.0
    return Heatmap(values, "gradcam", 0, "X")


def test_marks_scored_against_the_reference_and_each_panel():
    reference = [Annotation("box", "X", "rad1", box=(0, 0, 5, 4))]  # 20 px
    heatmaps = {"gradcam": _heatmap()}
    on_the_region, by_method = score_marks([(0, 0, 5, 2)], SHAPE, reference, "X", heatmaps)
    assert on_the_region == pytest.approx(10 / 20)
    assert by_method == {"gradcam": pytest.approx(1.0)}
    beside, by_method = score_marks([(5, 0, 10, 2)], SHAPE, reference, "X", heatmaps)
    assert beside == 0.0 and by_method == {"gradcam": 0.0}
    half, by_method = score_marks([(2, 0, 7, 2)], SHAPE, reference, "X", heatmaps)
    assert half == pytest.approx(6 / 24) and by_method["gradcam"] == pytest.approx(6 / 14)
    # no reference annotation of the label: None, the panels still scored
    none, by_method = score_marks([(0, 0, 5, 2)], SHAPE, reference, "Y", heatmaps)
    assert none is None and by_method["gradcam"] == pytest.approx(1.0)


MARKS = [
    {"case_id": "a", "target": "Edema", "rater": "R01", "x_min": 1.0, "y_min": 2.0,
     "x_max": 3.0, "y_max": 4.0},
    {"case_id": "a", "target": "Edema", "rater": "R02", "x_min": 0.5, "y_min": 0.0,
     "x_max": 9.0, "y_max": 9.5},
    {"case_id": "b", "target": "Edema", "rater": "R01", "x_min": 0.0, "y_min": 0.0,
     "x_max": 1.0, "y_max": 1.0},
]  # fmt: skip


def test_marks_as_a_manifest_that_evaluate_reads(tmp_path):
    import cv2

    from cxrxai.datasets.manifest import load_manifest

    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros(SHAPE, np.uint8))
    rows = manifest_rows(MARKS, {"a": str(image)})
    assert [r["author"] for r in rows] == ["R01", "R02", "R01"]
    assert rows[2]["image"] == ""  # no image known for case b
    path = tmp_path / "marks.csv"
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows[:2])
    (case,) = load_manifest(path)
    boxes = sorted((a.author, a.box) for a in case.annotations)
    assert boxes == [("R01", (1.0, 2.0, 3.0, 4.0)), ("R02", (0.5, 0.0, 9.0, 9.5))]
    assert case.labels == ["Edema"]  # once, though each box's row repeats it


def test_marks_as_results_for_a_pacs_are_readers_boxes_only():
    results = marks_results(MARKS, {"a": "/images/a.dcm"})
    ((path, result),) = results  # case b has no image: nothing to file it with
    assert path == "/images/a.dcm"
    assert not result.probabilities and not result.predicted and not result.maps
    assert [(b.label, b.author, b.box) for b in result.truth] == [
        ("Edema", "R01", (1.0, 2.0, 3.0, 4.0)),
        ("Edema", "R02", (0.5, 0.0, 9.0, 9.5)),
    ]


def test_box_tuples_keep_boxes_only():
    drawn = [
        Annotation("box", "X", "me", box=(1, 2, 3, 4)),
        Annotation("point", "X", "me", point=(5, 5)),
    ]
    assert box_tuples(drawn) == [(1.0, 2.0, 3.0, 4.0)]
