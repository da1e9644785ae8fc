"""SmoothGrad-CAM, SmoothGrad and Integrated Gradients: shape, seeding, completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(size=48), device=DEVICE)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(1).random((60, 50), dtype=np.float32)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("smoothgrad-cam", {"n_samples": 6, "batch_size": 4}),
        ("smoothgrad", {"n_samples": 6, "batch_size": 4}),
    ],
)
def test_seeded_noise_is_reproducible(bundle, image, method, params):
    explainer = get_explainer(method, **params)
    (first,) = explainer.explain(bundle, image, target=1, seed=3)
    (again,) = explainer.explain(bundle, image, target=1, seed=3)
    (other,) = explainer.explain(bundle, image, target=1, seed=4)
    assert first.shape == image.shape and first.seed == 3
    torch.testing.assert_close(first.values, again.values)
    assert not torch.allclose(first.values, other.values)


def test_smoothgrad_cam_with_no_noise_equals_gradcam(bundle, image):
    (smooth,) = get_explainer("smoothgrad-cam", n_samples=3, sigma=0.0).explain(
        bundle, image, target=0
    )
    (plain,) = get_explainer("gradcam").explain(bundle, image, target=0)
    torch.testing.assert_close(smooth.values, plain.values, rtol=1e-4, atol=1e-5)


def test_integrated_gradients_completeness(bundle, image):
    """Sum of IG attributions ~ logit(image) - logit(black) (captum's convergence delta)."""
    explainer = get_explainer("integrated-gradients", n_steps=128)
    batch = bundle.preprocess(image)
    attribution = explainer.attribute(bundle, batch, 1, torch.Generator())
    black = bundle.preprocess(np.zeros_like(image))
    with torch.no_grad():
        expected = float(bundle.model(batch)[0, 1] - bundle.model(black)[0, 1])
    assert float(attribution.sum()) == pytest.approx(expected, rel=0.05, abs=0.02)
