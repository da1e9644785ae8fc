"""The parallel quickshift gives scikit-image's labels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import quickshift as skimage_quickshift

from cxrxai.explain.superpixels import quickshift

LIME_DEFAULTS = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}


@pytest.mark.parametrize(
    "params",
    [
        {},
        LIME_DEFAULTS,
        {"kernel_size": 2.5, "max_dist": 6, "ratio": 0.5, "rng": 3},
        {"kernel_size": 3, "max_dist": 8, "sigma": 1.5, "convert2lab": False},
    ],
)
def test_labels_equal_scikit_image(params):
    rng = np.random.default_rng(0)
    for shape in ((37, 52, 3), (64, 48, 3)):
        # smooth blobs plus noise: regions of several sizes, near-ties in density
        image = rng.random(shape)
        image[: shape[0] // 2, : shape[1] // 3] *= 0.2
        for scale in (1.0, 255.0):
            expected = skimage_quickshift(image * scale, **params)
            np.testing.assert_array_equal(quickshift(image * scale, **params), expected)


def test_uint8_and_float32_inputs_follow_scikit_image():
    rng = np.random.default_rng(1)
    image8 = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(quickshift(image8), skimage_quickshift(image8))
    image32 = image8.astype(np.float32) / 255.0  # scikit-image segments this in float32
    np.testing.assert_array_equal(quickshift(image32), skimage_quickshift(image32))


def test_flat_image_ties_are_broken_like_scikit_image():
    flat = np.full((20, 24, 3), 0.5)  # equal densities but for the tie-breaking noise
    labels = quickshift(flat, **LIME_DEFAULTS)
    np.testing.assert_array_equal(labels, skimage_quickshift(flat, **LIME_DEFAULTS))
    assert labels.min() == 0 and labels.shape == (20, 24)


def test_kernel_size_below_one_is_refused():
    with pytest.raises(ValueError, match="kernel_size"):
        quickshift(np.zeros((8, 8, 3)), kernel_size=0.5)


def test_real_radiographs_as_lime_segments_them(covid_root):
    """COVID-QU-Ex images at the demo model's 224 px, grey in 0-255 repeated to RGB (what
    LIME passes): identical labels with lime's quickshift settings."""
    import cv2

    from cxrxai.datasets.covidqu import load_covid_qu_ex

    cases = load_covid_qu_ex(covid_root / "Val")[::500][:3]
    assert cases
    for case in cases:
        grey = cv2.imread(str(case.image_path), cv2.IMREAD_GRAYSCALE)
        grey = cv2.resize(grey, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float64)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        expected = skimage_quickshift(rgb, **LIME_DEFAULTS)
        assert expected.max() > 10  # a real over-segmentation, not a trivial one
        np.testing.assert_array_equal(quickshift(rgb, **LIME_DEFAULTS), expected)
