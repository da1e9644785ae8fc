"""The reader's own boxes drawn with the mouse: selection events (which come from the
browser) become boxes in image pixels, or nothing."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.evaluation.drawing import (
    MAX_BOXES,
    boxes_from_selection,
    drawing_figure,
    drawing_scale,
)


def test_boxes_in_image_pixels_clipped_to_the_image():
    selection = {
        "box": [
            {"x": [100.5, 10.0], "y": [20.0, 80.0], "xref": "x", "yref": "y"},
            {"x": [-50, 5000], "y": [1900, 4000]},  # clipped to 1841 x 1955
        ]
    }
    first, second = boxes_from_selection(selection, (1955, 1841), "COVID-19", "Dr A")
    assert first.box == (10.0, 20.0, 100.5, 80.0) and first.author == "Dr A"
    assert first.label == "COVID-19" and first.role == "finding"
    assert second.box == (0.0, 1900.0, 1841.0, 1955.0)


@pytest.mark.parametrize(
    "selection",
    [
        None,
        {},
        {"box": "not a list"},
        {"box": [{"x": [1, 2]}]},  # no y
        {"box": [{"x": ["a", "b"], "y": [1, 2]}]},
        {"box": [{"x": [float("nan"), 5], "y": [1, 9]}]},
        {"box": [{"x": [5, 5.5], "y": [1, 9]}]},  # thinner than a pixel
        {"box": [{"x": [3000, 4000], "y": [1, 9]}]},  # outside the image
        {"box": [None, 7]},
    ],
)
def test_malformed_selections_give_no_box(selection):
    assert boxes_from_selection(selection, (100, 200), "x", "me") == []


def test_at_most_max_boxes():
    many = {"box": [{"x": [0, 10], "y": [0, 10]}] * (MAX_BOXES + 5)}
    assert len(boxes_from_selection(many, (100, 100), "x", "me")) == MAX_BOXES


def test_figure_axes_are_image_pixels():
    picture = np.zeros((1955, 1841, 3), np.uint8)
    figure = drawing_figure(picture, (1955, 1841))
    assert drawing_scale((1955, 1841)) == pytest.approx(1955 / 640)
    image = figure.data[0]
    assert image.source.startswith("data:image/png;base64,")
    assert image.dx == pytest.approx(1955 / 640)
    assert list(figure.layout.xaxis.range) == [0, 1841] and figure.layout.dragmode == "select"
