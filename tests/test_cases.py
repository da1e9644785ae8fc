"""Annotations rasterise to masks with known pixel counts; rendering draws them."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.cases import Annotation, Case
from cxrxai.render import ANATOMY_COLOUR, author_colours, draw_annotations


def test_box_to_mask_known_area():
    mask = Annotation("box", "Mass", "R1", box=(1.0, 2.0, 4.0, 6.0)).to_mask((8, 8))
    assert mask.sum() == 3 * 4 and mask[2:6, 1:4].all()


def test_box_clipped_to_image():
    mask = Annotation("box", "Mass", box=(-3.0, -3.0, 100.0, 2.0)).to_mask((8, 8))
    assert mask.sum() == 16


def test_point_and_mask():
    assert Annotation("point", "Nodule", point=(3.2, 5.7)).to_mask((8, 8))[6, 3]
    square = np.zeros((8, 8), bool)
    square[2:4, 2:4] = True
    mask_annotation = Annotation("mask", "X", mask_loader=lambda: square)
    assert mask_annotation.to_mask((8, 8)).sum() == 4
    with pytest.raises(ValueError, match="shape"):
        mask_annotation.to_mask((4, 4))


@pytest.mark.parametrize(
    "kwargs",
    [{"kind": "box"}, {"kind": "box", "box": (5, 5, 1, 1)}, {"kind": "point"}, {"kind": "mask"}],
)
def test_invalid_annotations(kwargs):
    with pytest.raises(ValueError):
        Annotation(label="x", **kwargs)


def test_case_helpers_and_render():
    square = np.zeros((16, 16), bool)
    square[4:12, 4:12] = True
    case = Case(
        "c",
        image_path="none.png",
        annotations=[
            Annotation("box", "A", "R1", box=(1, 1, 6, 6)),
            Annotation("box", "A", "R2", box=(2, 2, 7, 7)),
            Annotation("mask", "lungs", "src", role="anatomy", mask_loader=lambda: square),
        ],
    )
    assert case.authors() == ["R1", "R2", "src"]
    assert len(case.findings()) == 2 and case.anatomy("lungs") is not None
    colours = author_colours(case.annotations)
    assert len(set(colours.values())) == 3
    picture = draw_annotations(np.zeros((16, 16), np.float32), case.annotations, line_px=1)
    assert picture.shape == (16, 16, 3) and picture.dtype == np.uint8
    assert tuple(picture[1, 1]) == colours["R1"]
    assert tuple(picture[4, 8]) == ANATOMY_COLOUR  # anatomy outline, muted
    assert tuple(picture[8, 8]) == (0, 0, 0)  # inside the mask stays visible
