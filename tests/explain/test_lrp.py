"""LRP with zennit on timm models: relevance conservation, exact canonization, hooks.

Conservation is checked with biases excluded from the rules (zennit ``zero_params``):
then every rule used (Flat, ZPlus, Epsilon, Norm for sums and pooling, Pass for
activations and unmerged BatchNorm) passes on all incoming relevance except what the
stabilisers (1e-6) absorb, so input relevance must equal the explained logit to 1e-3
relative. With biases, relevance is absorbed by them (never created), which is what the
demo model's figure in docs/benchmarks.md reports.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from zennit.composites import EpsilonPlusFlat

from cxrxai.card import ModelCard
from cxrxai.checkpoint import load_checkpoint, save_checkpoint
from cxrxai.cli import main
from cxrxai.environment import DEMO_CHECKPOINT
from cxrxai.errors import CxrxaiError
from cxrxai.explain import get_explainer
from cxrxai.explain.lrp import InplaceOffCanonizer, canonize, canonizers_for, relevance
from cxrxai.runner import ModelBundle


def _randomise_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, as in a trained model (timm initialises them to
    identity, which would hide merge errors)."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return model


def _model(architecture: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _randomise_batchnorm(timm.create_model(architecture, num_classes=3, in_chans=1)).eval()


def _input_relevance(model, x, canonizers) -> tuple[float, float]:
    composite = EpsilonPlusFlat(zero_params=["bias"], canonizers=canonizers)
    inputs = x.clone().requires_grad_(True)
    with composite.context(model) as modified:
        output = modified(inputs)
        one_hot = torch.zeros_like(output)
        one_hot[:, 1] = 1.0
        (grad,) = torch.autograd.grad(output, inputs, grad_outputs=output * one_hot)
    return float(grad.sum()), float(output.detach()[0, 1])


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


def _real_xray(size: int = 96) -> torch.Tensor:
    """The real CR chest radiograph of pydicom-data, resized and standardised."""
    import cv2
    from pydicom.data import get_testdata_file

    from cxrxai.imageio import read_image

    path = get_testdata_file("RG1_UNCR.dcm")
    assert path is not None, "RG1_UNCR.dcm missing: pip install pydicom-data"
    pixels = read_image(path).pixels
    small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy((small - small.mean()) / small.std()).float()[None, None]


@pytest.mark.parametrize("architecture", ["resnet50", "densenet121"])
@pytest.mark.parametrize("source", ["noise", "real-xray"])
def test_conservation_resnet50_densenet121(architecture, source):
    model = _model(architecture)
    if source == "noise":
        x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    else:
        x = _real_xray()
    with torch.no_grad():
        before = model(x)
    total, logit = _input_relevance(model, x, canonizers_for(model))
    assert total == pytest.approx(logit, rel=1e-3)
    # canonizers undone: same function, no hooks, in-place ReLUs back
    assert _hooks(model) == 0
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    assert any(getattr(m, "inplace", False) for m in model.modules())


def test_resnet50_stock_canonizers_are_not_enough():
    """Without the timm block canonizer each residual addition doubles relevance."""
    model = _model("resnet50")
    x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    total, logit = _input_relevance(model, x, [InplaceOffCanonizer()])
    assert abs(total / logit) > 100


def test_lite0_canonization_is_exact_and_never_creates_relevance():
    model = _model("tf_efficientnet_lite0")
    x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
    norms_before = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    instances = [i for c in canonizers_for(model) for i in c.apply(model)]
    merged = sum(len(getattr(i, "folded", ())) for i in instances)
    # merged BatchNorms are exact identities and leave the network while canonized
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    summed = sum(hasattr(getattr(i, "module", None), "canonizer_sum") for i in instances)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=1e-4, atol=1e-4)
    for instance in reversed(instances):
        instance.remove()
    assert merged == 49 and summed == 9  # every BatchNorm merged, every skip through Sum
    norms_after = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms_after == norms_before  # the same modules back in their places
    total, logit = _input_relevance(model, x, canonizers_for(model))
    uncanonized, _ = _input_relevance(model, x, [InplaceOffCanonizer()])
    # Without the canonizer the 9 skips double relevance (~2^9); with it, relevance is
    # only lost where a depthwise 3x3 window has no positive contribution (ZPlus).
    assert abs(uncanonized / logit) > 50
    assert 0.5 < total / logit <= 1.0 + 1e-3
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)
    assert _hooks(model) == 0


def _bundle(model: torch.nn.Module, architecture: str = "tf_efficientnet_lite0") -> ModelBundle:
    card = ModelCard(
        architecture=architecture,
        labels=["a", "b", "c"],
        task="multiclass",
        input_size=(96, 96),
        in_channels=1,
        normalisation={"mean": [0.5], "std": [0.5]},
        target_layer="bn2",
    )
    return ModelBundle(model, card, torch.device("cpu"), "test")


@pytest.mark.parametrize(
    "composite", ["epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1"]
)
def test_lrp_explainer_composites(composite):
    model = _model("tf_efficientnet_lite0")
    bundle = _bundle(model)
    image = np.random.default_rng(0).random((120, 100), dtype=np.float32)
    (heatmap,) = get_explainer("lrp", composite=composite).explain(bundle, image, target=1)
    assert heatmap.shape == image.shape and torch.isfinite(heatmap.values).all()
    attribution, _output = relevance(bundle, bundle.preprocess(image), 1, composite)
    assert attribution.shape == (1, 1, 96, 96) and _hooks(model) == 0


@pytest.mark.parametrize("architecture", ["tf_efficientnet_lite0", "resnet50", "densenet121"])
def test_canonized_once_gives_the_maps_of_canonizing_every_call(architecture):
    """relevance() keeps a canonized private copy; its maps equal zennit's usual
    canonize-hook-undo per call on the original network, every call, and the copy keeps
    no rule hooks between calls."""
    model = _model(architecture)
    bundle = _bundle(model, architecture)
    x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(2))
    for target in (1, 0, 1):
        cached, output = relevance(bundle, x, target)
        composite = EpsilonPlusFlat(canonizers=canonizers_for(model))
        inputs = x.clone().requires_grad_(True)
        with composite.context(model) as modified:
            out = modified(inputs)
            one_hot = torch.zeros_like(out)
            one_hot[:, target] = 1.0
            (expected,) = torch.autograd.grad(out, inputs, grad_outputs=out * one_hot)
        torch.testing.assert_close(cached, expected, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(output, out.detach())
    with bundle.private_model(prepare=canonize) as copy:
        assert copy is not model and _hooks(copy) == 0
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in copy.modules()) or (
            architecture == "densenet121"  # BatchNorm after a concatenation stays
        )
    assert _hooks(model) == 0
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def _randomised_xrv_state(architecture: str, tmp_path: Path) -> Path:
    """A torchxrayvision-layout state dict file (what import-xrv reads), random weights
    with non-trivial BatchNorm."""
    from cxrxai.checkpoint import _build_xrv_network

    card = ModelCard(
        architecture=architecture,
        labels=[f"finding {i}" for i in range(18)],
        task="multilabel",
        input_size=(224, 224),
        in_channels=1,
        normalisation={"mean": [0.5], "std": [1 / 2048]},
        target_layer="features.norm5",
        framework="torchxrayvision",
    )
    torch.manual_seed(0)
    path = tmp_path / f"{architecture}.pt"
    torch.save(_randomise_batchnorm(_build_xrv_network(card)).eval().state_dict(), path)
    return path


def _through_the_users_path(kind: str, tmp_path: Path) -> ModelBundle:
    """Each architecture the project loads, loaded the way a user loads it."""
    if kind == "demo":
        return load_checkpoint(DEMO_CHECKPOINT, device="cpu")
    if kind == "timm-resnet50":
        card = replace(_bundle(_model("resnet50"), "resnet50").card, target_layer="layer4")
        save_checkpoint(_model("resnet50"), card, tmp_path / "timm")
        return load_checkpoint(tmp_path / "timm", device="cpu")
    architecture = {"xrv-resnet50": "resnet50", "xrv-densenet121": "densenet121"}[kind]
    weights = _randomised_xrv_state(architecture, tmp_path)
    out = tmp_path / "imported"
    assert (
        main(["import-xrv", str(weights), "--out", str(out), "--architecture", architecture]) == 0
    )
    return load_checkpoint(out, device="cpu")


@pytest.mark.parametrize("kind", ["demo", "timm-resnet50", "xrv-resnet50", "xrv-densenet121"])
def test_conservation_on_every_architecture_through_the_users_path(kind, tmp_path):
    """Canonizers are chosen by type: torchvision's ResNet blocks (import-xrv's ResNet-50)
    share timm's class names, and matching names left them uncanonized (input relevance
    296,290 for a logit of 4.91); xrv's DenseNet head lost 12 % in its functional ops."""
    bundle = _through_the_users_path(kind, tmp_path)
    model = bundle.model
    x = _real_xray(224 if kind == "xrv-densenet121" else 96)
    with torch.no_grad():
        before = model(x)
    target = int(before[0].argmax())
    composite = EpsilonPlusFlat(zero_params=["bias"], canonizers=canonizers_for(model))
    inputs = x.clone().requires_grad_(True)
    with composite.context(model) as modified:
        output = modified(inputs)
        torch.testing.assert_close(output, before, rtol=1e-4, atol=1e-4)  # same function
        one_hot = torch.zeros_like(output)
        one_hot[:, target] = 1.0
        (grad,) = torch.autograd.grad(output, inputs, grad_outputs=output * one_hot)
    ratio = float(grad.sum()) / float(before[0, target])
    if kind == "demo":
        # Lite0's depthwise 3x3 convolutions: ZPlus absorbs relevance where a window has
        # no positive contribution (docs/explanations.md); it never creates any.
        assert 0.05 < ratio <= 1.0 + 1e-3
    else:
        assert ratio == pytest.approx(1.0, abs=1e-3)
    assert _hooks(model) == 0
    # and the product path: the explainer's map through the private canonized copy
    attribution, output = relevance(bundle, x, target)
    assert torch.isfinite(attribution).all()
    assert abs(float(attribution.sum())) <= 1.5 * abs(float(output[0, target]))


class _GatedBlock(torch.nn.Module):
    """A residual block no canonizer knows."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_a_model_with_unknown_blocks_is_refused_by_name():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        _GatedBlock(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    with pytest.raises(CxrxaiError, match=r"soundly.*'1' \(.*_GatedBlock\)"):
        canonizers_for(model)
    bundle = _bundle(model)
    with pytest.raises(CxrxaiError, match="_GatedBlock"):
        get_explainer("lrp").check(bundle)
    se_model = timm.create_model("efficientnet_b0", num_classes=3, in_chans=1)
    with pytest.raises(CxrxaiError, match=r"soundly.*(SiLU|SqueezeExcite)"):
        canonizers_for(se_model)
