"""Every registered method on every architecture family the project loads, with gray and
RGB input: a finite map of the image's shape, on the model's device, no hooks left."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from cxrxai.card import ModelCard
from cxrxai.explain import METHODS, get_explainer
from cxrxai.runner import ModelBundle

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ARCHITECTURES = {"tf_efficientnet_lite0": "bn2", "resnet18": "layer4", "densenet121": "features"}
# The cheapest settings that still exercise each method's whole path.
QUICK = {
    "lime": {"n_samples": 20},
    "shap": {"n_samples": 20},
    "kernel-shap": {"n_samples": 20, "n_segments": 8},
    "smoothgrad": {"n_samples": 2},
    "smoothgrad-cam": {"n_samples": 2},
    "integrated-gradients": {"n_steps": 4},
}


@pytest.fixture(scope="module", params=[(a, c) for a in ARCHITECTURES for c in (1, 3)],
                ids=lambda p: f"{p[0]}-{p[1]}ch")  # fmt: skip
def bundle(request) -> ModelBundle:
    architecture, channels = request.param
    torch.manual_seed(0)
    model = timm.create_model(architecture, num_classes=2, in_chans=channels).eval()
    card = ModelCard(
        architecture=architecture,
        labels=["a", "b"],
        task="multiclass",
        input_size=(48, 48),
        in_channels=channels,
        normalisation={"mean": [0.5] * channels, "std": [0.25] * channels},
        target_layer=ARCHITECTURES[architecture],
    )
    return ModelBundle(model.to(DEVICE).requires_grad_(False), card, DEVICE, "test")


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_on_every_architecture(bundle, method):
    image = np.random.default_rng(1).random((52, 44), dtype=np.float32)
    explainer = get_explainer(method, **QUICK.get(method, {}))
    explainer.check(bundle)
    (heatmap,) = explainer.explain(bundle, image, target="b")
    assert heatmap.shape == image.shape and heatmap.values.device.type == DEVICE.type
    assert torch.isfinite(heatmap.values).all(), (method, bundle.card.architecture)
    assert heatmap.method == method and heatmap.target_label == "b"
    assert _hooks(bundle.model) == 0
