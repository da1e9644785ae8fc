"""Heatmap -> region in every mode, and region -> boxes as the VinDr study's code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lime.lime_image import ImageExplanation
from PIL import Image, ImageDraw

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import regions


def test_top_percent_counts_and_ties():
    heat = torch.arange(100, dtype=torch.float32).view(10, 10)
    top = regions.top_percent(heat, 10)
    assert top.sum() == 10 and top.view(-1)[90:].all()
    flat = torch.zeros(10, 10)
    flat[0, :3] = 1.0  # three tied maxima, 1 % asked -> all three kept
    assert regions.top_percent(flat, 1).sum() == 3
    batch = torch.stack([heat, heat.flip(0)])
    assert regions.top_percent(batch, 5).flatten(1).sum(1).tolist() == [5, 5]
    with pytest.raises(CxrxaiError, match="percent"):
        regions.top_percent(heat, 0)


def test_fixed_threshold_is_on_the_min_max_normalised_map():
    heat = torch.tensor([[10.0, 20.0], [30.0, 50.0]])  # normalised 0, .25, .5, 1
    assert regions.fixed_threshold(heat, 0.5).tolist() == [[False, False], [True, True]]
    with pytest.raises(CxrxaiError, match="threshold"):
        regions.fixed_threshold(heat, 1.5)


def test_otsu_fills_external_contours():
    heat = torch.zeros(32, 32)
    heat[8:24, 8:24] = 1.0
    heat[14:18, 14:18] = 0.0  # a hole inside the hot ring
    out = regions.otsu_filled(heat)
    assert out[8:24, 8:24].all() and out.sum() == 16 * 16  # hole filled
    assert not regions.otsu_filled(torch.zeros(8, 8)).any()  # constant map: no region


def chexlocalize_segmentation(cam: torch.Tensor) -> np.ndarray:
    """CheXlocalize's heatmap_to_segmentation.cam_to_segmentation (Otsu branch), step by
    step as that script does it, as the reference."""
    mask = cam - cam.min()
    mask = mask.div(mask.max()).numpy()
    mask = np.uint8(255 * mask)
    thresh = cv2.threshold(mask, 0, np.max(mask), cv2.THRESH_OTSU)[1]
    contours = cv2.findContours(thresh, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]))
    for contour in contours:
        if len(contour) > 1:
            points = [(int(p[0][0]), int(p[0][1])) for p in contour]
            ImageDraw.Draw(canvas).polygon(points, outline=1, fill=1)
    return np.array(canvas, dtype=bool)


def cam_like_maps(n: int, seed: int) -> torch.Tensor:
    """Grad-CAM-like maps: ReLU'd 7x7 noise upsampled bilinearly to 224 px, some with
    several blobs and holes."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.randn(n, 1, 7, 7, generator=gen).clamp(min=0) ** 2
    return F.interpolate(small, size=(224, 224), mode="bilinear", align_corners=False)[:, 0]


def test_otsu_is_chexlocalize_pixel_for_pixel():
    maps = cam_like_maps(40, seed=3)
    ours = regions.otsu_filled(maps)
    rounded_differs = 0
    for cam, region in zip(maps, ours, strict=True):
        expected = chexlocalize_segmentation(cam)
        assert np.array_equal(region.numpy(), expected)
        # rounding to 0-255 (the earlier choice) moves Otsu's threshold on some maps
        scaled = (regions.minmax(cam) * 255).round().to(torch.uint8).numpy()
        threshold, _ = cv2.threshold(scaled, 0, 1, cv2.THRESH_OTSU)
        truncated = (255 * regions.minmax(cam).numpy()).astype(np.uint8)
        rounded_differs += (scaled > threshold).sum() != (truncated > threshold).sum()
    assert rounded_differs > 0


def test_otsu_drops_single_pixel_contours_like_chexlocalize():
    heat = torch.zeros(32, 32)
    heat[4:12, 4:12] = 1.0
    heat[25, 25] = 1.0  # an isolated hot pixel: a one-point contour, not drawn
    out = regions.otsu_filled(heat)
    assert out[4:12, 4:12].all() and not out[25, 25] and out.sum() == 64
    assert np.array_equal(out.numpy(), chexlocalize_segmentation(heat))


def test_top_superpixels_matches_lime_get_image_and_mask():
    rng = np.random.default_rng(0)
    segments = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 8, 0), 8, 1)  # 32x32
    weights = rng.normal(size=16)
    explanation = ImageExplanation(np.zeros((32, 32, 3)), segments)
    explanation.local_exp = {0: sorted(enumerate(weights), key=lambda x: -abs(x[1]))}
    values = torch.from_numpy(weights[segments]).float()
    for n in (1, 3, 10, 16):
        _, expected = explanation.get_image_and_mask(0, positive_only=True, num_features=n)
        got = regions.top_superpixels(values, torch.from_numpy(segments), n)
        assert np.array_equal(got.numpy(), expected.astype(bool)), n


def test_restrict_and_dispatch():
    heat = torch.arange(64, dtype=torch.float32).view(8, 8)
    lungs = torch.zeros(8, 8, dtype=torch.bool)
    lungs[:, :4] = True
    out = regions.region(heat, "top-percent", 50, within=lungs)
    assert not out[:, 4:].any() and out.any()
    with pytest.raises(CxrxaiError, match="needs superpixels"):
        regions.region(heat, "top-superpixels", 3)
    with pytest.raises(CxrxaiError, match="Unknown region mode"):
        regions.region(heat, "magic", 1)


def test_region_boxes_as_vindr_code():
    mask = np.zeros((64, 64), np.uint8)
    mask[5:10, 5:20] = 1
    mask[30:50, 40:45] = 1
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    expected = sorted((x, y, x + w, y + h) for x, y, w, h in map(cv2.boundingRect, contours))
    assert sorted(regions.region_boxes(torch.from_numpy(mask))) == expected
    assert sorted(regions.region_boxes(mask)) == [(5, 5, 20, 10), (40, 30, 45, 50)]


def test_otsu_regions_are_clean_bools_whatever_torch_threads():
    """Pillow's mode "1" pictures give bools stored as byte 255: the fused metric kernel
    reads bytes, and a torch copy made with one thread keeps them, so every Otsu metric
    was wrong on one thread (found comparing the Ray engine, one thread per worker)."""
    from cxrxai.metrics.registry import localisation_metrics

    maps = cam_like_maps(6, seed=5)
    truth = torch.zeros(maps.shape, dtype=torch.bool)
    truth[:, 10:40, 10:40] = True
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            found = torch.stack([regions.region(m, "otsu", 0.0) for m in maps])
            assert found.numpy().view(np.uint8).max() == 1
            results.append(localisation_metrics(maps, found, truth))
    finally:
        torch.set_num_threads(threads)
    for name, values in results[0].items():
        assert torch.equal(values.nan_to_num(-1), results[1][name].nan_to_num(-1)), name
    assert (results[0]["precision"] <= 1).all() and (results[0]["iou"] <= 1).all()
