"""Cascading randomisation: a model-blind 'explanation' fails, Grad-CAM changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.evaluation.sanity import SanityRow, cascading_randomisation, layer_groups, verdicts
from cxrxai.explain import registry
from cxrxai.explain.base import Explainer
from cxrxai.metrics.agreement import compare_maps, downsized


class ImageItselfExplainer(Explainer):
    """Returns the (resized) input: it ignores the model, so it must fail."""

    name = "image-itself"
    description = "negative control"
    needs_gradients = False

    def attribute(self, bundle, batch, index, generator):
        return batch[0, 0]


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(size=48, target_layer="layer4"), device="cpu")


def test_compare_maps_identity_and_noise():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert compare_maps(a, a) == pytest.approx((1.0, 1.0))
    rho, ssim = compare_maps(a, rng.random((32, 32)))
    assert abs(rho) < 0.2 and ssim < 0.3


def test_compare_maps_at_most_256_px_a_side():
    yy, xx = np.mgrid[0:1200, 0:900]
    a = np.exp(-((yy - 300) ** 2 + (xx - 300) ** 2) / 4e4).astype(np.float32)
    b = a + np.random.default_rng(0).normal(0, 0.05, a.shape).astype(np.float32)
    assert downsized(a).shape == (256, 192)
    assert compare_maps(a, b) == compare_maps(downsized(a), downsized(b))
    assert downsized(a[:100, :80]).shape == (100, 80)  # small maps as they are


def test_layer_groups_run_stem_to_classifier(bundle):
    names = [name for name, _ in layer_groups(bundle.model)]
    assert names[0] == "conv1" and names[-1] == "fc" and "layer4.1" in names


def test_model_blind_method_fails_and_gradcam_changes(bundle, monkeypatch):
    monkeypatch.setitem(registry.METHODS, "image-itself", ImageItselfExplainer)
    image = np.random.default_rng(1).random((60, 50), dtype=np.float32)
    before = [p.clone() for p in bundle.model.parameters()]
    rows = cascading_randomisation(
        bundle, image, ["image-itself", "gradcam"], target=1, max_groups=4
    )
    assert [r.randomised_through for r in rows if r.method == "gradcam"] == [
        "fc",
        "layer4.1",
        "layer4.0",
        "layer3.1",
    ]
    result = verdicts(rows)
    assert result["image-itself"] is False
    assert result["gradcam"] is True
    # the trained bundle itself is untouched
    for old, new in zip(before, bundle.model.parameters(), strict=True):
        assert torch.equal(old, new)


def test_a_map_turned_into_its_opposite_passes():
    rows = [
        SanityRow("inverted", "fc", 1, 0.9, 0.8),
        SanityRow("inverted", "conv1", 2, -0.7, 0.06),  # it changed with the model
        SanityRow("survivor", "fc", 1, 0.9, 0.8),
        SanityRow("survivor", "conv1", 2, 0.6, 0.5),
    ]
    assert verdicts(rows) == {"inverted": True, "survivor": False}
