"""Grad-CAM family: one parametrised test over every method (shape, device, hooks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.errors import CxrxaiError
from cxrxai.explain import get_explainer, list_methods, resolve_targets
from cxrxai.explain.cam import CAM_EXPLAINERS, candidate_layers

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def tiny_bundle(tiny_checkpoint):
    folder = tiny_checkpoint(
        labels=("a", "b", "c"),
        size=64,
        target_layer="layer4",
        task="multilabel",
        thresholds={"a": 0.0, "b": 0.0, "c": 1.0},
    )
    return load_checkpoint(folder, device=DEVICE)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).random((90, 70), dtype=np.float32)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("method", [cls.name for cls in CAM_EXPLAINERS])
def test_every_cam_method_shape_device_and_hooks(tiny_bundle, image, method):
    (heatmap,) = get_explainer(method).explain(tiny_bundle, image, target="b")
    assert heatmap.shape == image.shape
    assert heatmap.values.device.type == DEVICE and heatmap.values.dtype == torch.float32
    assert torch.isfinite(heatmap.values).all()
    assert heatmap.method == method and heatmap.target_label == "b"
    assert heatmap.seconds > 0
    assert _hook_count(tiny_bundle.model) == 0


def test_other_layer_by_name(tiny_bundle, image):
    (a,) = get_explainer("gradcam", layer="layer3").explain(tiny_bundle, image, target=0)
    (b,) = get_explainer("gradcam").explain(tiny_bundle, image, target=0)
    assert a.params["layer"] == "layer3" and not torch.allclose(a.values, b.values)
    with pytest.raises(CxrxaiError, match="Layer 'nope'"):
        get_explainer("gradcam", layer="nope").explain(tiny_bundle, image, target=0)


def test_candidate_layers(tiny_bundle):
    listed = candidate_layers(tiny_bundle)
    layers = {name: (c, h, w) for name, c, h, w in listed}
    assert layers["layer4.1.conv2"] == (512, 2, 2) and layers["layer3.1.conv2"] == (256, 4, 4)
    # stages (containers) too, each after its own layers; nothing without a feature map
    assert layers["layer4"] == (512, 2, 2) and tiny_bundle.card.target_layer in layers
    names = [name for name, *_ in listed]
    assert names.index("layer4.1.conv2") < names.index("layer4") < len(names)
    assert "fc" not in layers and "global_pool" not in layers


def test_targets(tiny_bundle, image):
    # multi-label default: every label at or above its threshold (a, b: 0.0; c: 1.0)
    assert resolve_targets(tiny_bundle, image) == [0, 1]
    assert resolve_targets(tiny_bundle, image, "c") == [2]
    with pytest.raises(CxrxaiError, match="not a label"):
        resolve_targets(tiny_bundle, image, "zebra")
    with pytest.raises(CxrxaiError, match="out of range"):
        resolve_targets(tiny_bundle, image, 7)
    assert len(get_explainer("gradcam").explain(tiny_bundle, image)) == 2


def test_registry():
    names = {m["name"] for m in list_methods()}
    assert {
        "gradcam",
        "gradcam++",
        "scorecam",
        "hirescam",
        "xgradcam",
        "layercam",
        "eigencam",
    } <= names
    with pytest.raises(CxrxaiError, match="Unknown explanation method"):
        get_explainer("magic")


def test_demo_checkpoint_gradcam_on_real_case(covid_root):
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT

    bundle = load_checkpoint(DEMO_CHECKPOINT, device=DEVICE)
    case = next(c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"])
    image = case.load_image().pixels
    (heatmap,) = get_explainer("gradcam").explain(bundle, image)
    assert heatmap.shape == (256, 256)
    assert 0.0 <= float(heatmap.values.min()) and float(heatmap.values.max()) <= 1.0 + 1e-6
    # A trained model's map is not flat.
    assert float(heatmap.values.std()) > 0.05


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
def test_short_backward_gives_stock_maps(tiny_bundle, image, method):
    """Backward from the score to the layer only (frozen weights) = pytorch-grad-cam's
    full backward through every weight."""
    import copy

    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cxrxai.explain.cam import find_layer
    from cxrxai.explain.registry import METHODS

    model = copy.deepcopy(tiny_bundle.model).requires_grad_(True)
    layer = find_layer(model, tiny_bundle.card.target_layer)
    batch = tiny_bundle.preprocess(image)
    cam = METHODS[method].cam_class(model=model, target_layers=[layer])
    try:
        stock = cam(input_tensor=batch, targets=[ClassifierOutputTarget(1)])[0]
    finally:
        cam.activations_and_grads.release()
    ours = get_explainer(method).attribute(tiny_bundle, batch, 1, torch.Generator())
    assert not any(p.requires_grad for p in tiny_bundle.model.parameters())
    np.testing.assert_allclose(ours.cpu().numpy(), stock, atol=1e-6)
