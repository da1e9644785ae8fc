"""Annotations rasterise to masks with known pixel counts; rendering draws them."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.cases import Annotation, Case, findings_of
from cxrxai.render import (
    ANATOMY_COLOUR,
    HALO_COLOUR,
    author_colours,
    colour_legend,
    draw_annotations,
    heatmap_colours,
    png_bytes,
)


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


def test_findings_of_a_label_drawn_over_a_heatmap_with_a_halo():
    """The Review page outlines the scored findings on each (coloured) heatmap panel:
    only the explained label's findings, in the case's author colours, over a black line
    2 px thicker; the panel itself is not modified."""
    annotations = [
        Annotation("box", "Effusion", "R1", box=(4, 4, 12, 12)),
        Annotation("box", "Nodule", "R2", box=(2, 2, 18, 18)),
        Annotation("box", "Effusion", "R3", box=(6, 14, 10, 18)),
        Annotation("box", "Effusion", "lungs", role="anatomy", box=(0, 0, 19, 19)),
    ]
    scored = findings_of(annotations, "Effusion")
    assert [a.author for a in scored] == ["R1", "R3"]
    colours = author_colours(annotations)
    panel = np.full((20, 20, 3), 200, np.uint8)  # a uniform heatmap overlay
    drawn = draw_annotations(panel, scored, line_px=1, colours=colours, halo=True)
    assert drawn.shape == panel.shape and (panel == 200).all()
    assert tuple(drawn[4, 8]) == colours["R1"]  # the line itself, R1's colour everywhere
    assert tuple(drawn[14, 8]) == colours["R3"] != colours["R1"]
    assert tuple(drawn[5, 8]) == HALO_COLOUR and tuple(drawn[3, 8]) == HALO_COLOUR
    assert tuple(drawn[8, 8]) == (200, 200, 200)  # inside the box: the heatmap
    assert tuple(drawn[2, 16]) == (200, 200, 200)  # R2's Nodule: not drawn
    assert tuple(drawn[0, 10]) == (200, 200, 200)  # nor the anatomy
    plain = draw_annotations(panel, scored, line_px=1, colours=colours)
    assert tuple(plain[5, 8]) == (200, 200, 200)  # no halo unless asked


def test_colour_legend_says_how_the_panel_is_coloured():
    cam = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    relevance = np.array([[-1.0, 0.0], [2.0, 0.5]], np.float32)
    assert colour_legend(cam, "COVID-19", "viridis").startswith("viridis: this map's lowest")
    assert colour_legend(relevance, "COVID-19") == (
        "red: evidence for COVID-19, blue: against; white: none (0)"
    )
    # the legend matches the drawing: red where positive, blue where negative
    colours = heatmap_colours(relevance).astype(int)
    assert colours[1, 0, 0] > colours[1, 0, 2] and colours[0, 0, 2] > colours[0, 0, 0]


def test_png_bytes_round_trip():
    import cv2

    picture = np.zeros((5, 7, 3), np.uint8)
    picture[1, 2] = (255, 0, 0)  # red in RGB
    data = png_bytes(picture)
    assert data.startswith(b"\x89PNG")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), picture)


@pytest.mark.parametrize("colormap", ["inferno", "viridis", "jet"])
def test_heatmap_colours_are_matplotlibs_without_a_float_image(colormap):
    """The uint8 table gives the colours the float RGBA image gave, bit for bit."""
    from matplotlib import colormaps

    rng = np.random.default_rng(3)
    for values in (rng.random((40, 30)), rng.standard_normal((40, 30))):
        values = values.astype(np.float32)
        got = heatmap_colours(values, colormap=colormap)
        if values.min() < 0:
            unit, cmap = values / (2 * np.abs(values).max()) + 0.5, colormaps["RdBu_r"]
        else:
            unit = (values - values.min()) / (values.max() - values.min())
            cmap = colormaps[colormap]
        expected = (cmap(np.clip(unit, 0, 1))[:, :, :3] * 255).astype(np.uint8)
        assert got.dtype == np.uint8 and np.array_equal(got, expected)


def test_a_predicted_outline_is_drawn_dashed():
    """A model's lung outline is broken into dashes, a radiologist's mask is continuous."""
    from cxrxai.lungs import predicted_lungs

    mask = np.zeros((80, 80), bool)
    mask[10:70, 10:70] = True
    solid = Annotation("mask", "lungs", "QaTa-COV19", role="anatomy", mask_loader=lambda: mask)
    for annotation, continuous in ((solid, True), (predicted_lungs(mask, "m"), False)):
        top_edge = draw_annotations(np.zeros((80, 80), np.float32), [annotation], line_px=1)[10]
        drawn = (top_edge[10:70] == ANATOMY_COLOUR).all(axis=1)
        assert drawn.all() == continuous and drawn.mean() > 0.3


def test_pictures_for_the_screen_keep_their_aspect():
    from cxrxai.render import for_screen

    big = np.zeros((1955, 1841, 3), np.uint8)
    assert for_screen(big).shape == (1024, 964, 3)
    small = np.zeros((256, 256, 3), np.uint8)
    assert for_screen(small) is small
