"""Cascading randomisation: a model-blind 'explanation' fails, Grad-CAM changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import registry
from cxrxai.explain.base import Explainer
from cxrxai.explain.sanity import cascading_randomisation, compare_maps, layer_groups, verdicts


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
