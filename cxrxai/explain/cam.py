"""The Grad-CAM family through pytorch-grad-cam, on any named layer.

The default layer comes from the model card; :func:`candidate_layers` lists the layers
with a spatial output (name, channels, h, w) so a user can pick another ("picking the
correct layer" is an open point of the LIME vs Grad-CAM study).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import BATCH_SIZE, LAYER, Explainer
from cxrxai.runner import ModelBundle


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        raise CxrxaiError(
            f"Layer '{name}' is not in the model; list the candidates with "
            "`python -m cxrxai layers` (or the Model page, or candidate_layers(bundle))."
        )
    return modules[name]


@torch.no_grad()
def candidate_layers(bundle: ModelBundle) -> list[tuple[str, int, int, int]]:
    """(name, channels, height, width) of every module with a 4-D output, in the order the
    outputs are produced: a block follows its own layers (``layer4.2.conv3``, ...,
    ``layer4.2``, ``layer4``), so stage outputs - the usual CAM choices - are listed too."""
    found: list[tuple[str, int, int, int]] = []
    hooks = []

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                found.append((name, *map(int, output.shape[1:])))  # type: ignore[arg-type]

        return hook

    with bundle.private_model() as model:
        for name, module in model.named_modules():
            if name:
                hooks.append(module.register_forward_hook(record(name)))
        try:
            height, width = bundle.card.input_size
            model(torch.zeros(1, bundle.card.in_channels, height, width, device=bundle.device))
        finally:
            for hook in hooks:
                hook.remove()
    return found


def check_layer(bundle: ModelBundle, name: str | None) -> None:
    """A CAM layer must exist and produce a feature map (None: the card's, checked at load)."""
    if name is None:
        return
    find_layer(bundle.model, name)
    if name not in {layer for layer, *_ in candidate_layers(bundle)}:
        raise CxrxaiError(
            f"Layer '{name}' has no (N, C, H, W) feature map, so CAM methods cannot use it: "
            "choose a convolutional layer (`python -m cxrxai layers` or the Model page "
            "lists them)."
        )


def _gradient_start(name: str):  # -> a forward hook
    """Forward hook: the layer's output becomes a leaf that requires grad.

    The bundle's weights are frozen, so the backward pass of pytorch-grad-cam runs from
    the score to this layer only, instead of through the whole network into every
    weight: identical maps, a fraction of the time (docs/benchmarks.md). The clone keeps
    a later in-place op (DenseNet's ReLU after ``norm5``) off the leaf. A layer without a
    feature map is refused here, by name, rather than by pytorch-grad-cam's "Invalid grads
    shape" after the backward pass.
    """

    def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else "not a tensor"
            raise CxrxaiError(
                f"Layer '{name}' outputs {shape}, not a (N, C, H, W) feature map, so CAM "
                "methods cannot use it: choose a convolutional layer (`python -m cxrxai "
                "layers` or the Model page lists them)."
            )
        return output.detach().requires_grad_(True).clone()

    return hook


@contextlib.contextmanager
def gradients_from(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """The layer ``name`` of ``model``; backward passes start at it while inside (see
    :func:`_gradient_start`).

    Enter before building the pytorch-grad-cam object, so this hook runs before its own.
    """
    layer = find_layer(model, name)
    handle = layer.register_forward_hook(_gradient_start(name))
    try:
        yield layer
    finally:
        handle.remove()


class CamExplainer(Explainer):
    """Shared body: build the pytorch-grad-cam object on the layer, run, release hooks."""

    cam_class: ClassVar[type[BaseCAM]]
    needs_gradients = True
    settings = (LAYER, BATCH_SIZE.but(default=32, optional=False))

    def check(self, bundle: ModelBundle) -> None:
        check_layer(bundle, self.layer)

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        with bundle.private_model() as model:  # the hooks stay off the shared network
            with gradients_from(model, self.layer or bundle.card.target_layer) as layer:
                return self._cam(bundle, model, batch, index, layer)

    def _cam(
        self,
        bundle: ModelBundle,
        model: nn.Module,
        batch: torch.Tensor,
        index: int,
        layer: nn.Module,
    ) -> torch.Tensor:
        cam = self.cam_class(model=model, target_layers=[layer])
        if hasattr(cam, "batch_size"):
            cam.batch_size = self.batch_size
        try:
            # Not used as a context manager: its __exit__ swallows IndexError.
            grayscale = cam(input_tensor=batch, targets=[ClassifierOutputTarget(index)])
        finally:
            cam.activations_and_grads.release()
        return torch.from_numpy(grayscale[0]).to(bundle.device)


class GradCamExplainer(CamExplainer):
    name = "gradcam"
    description = "Grad-CAM: channel weights = spatially averaged gradients (Selvaraju 2017)"
    cam_class = GradCAM


class GradCamPlusPlusExplainer(CamExplainer):
    name = "gradcam++"
    description = "Grad-CAM++: higher-order gradient weights, better for several instances"
    cam_class = GradCAMPlusPlus


class ScoreCamExplainer(CamExplainer):
    name = "scorecam"
    description = "Score-CAM: gradient-free, one forward pass per channel (slow)"
    cam_class = ScoreCAM
    needs_gradients = False


class HiResCamExplainer(CamExplainer):
    name = "hirescam"
    description = "HiResCAM: element-wise gradient x activation, faithful to the model"
    cam_class = HiResCAM


class XGradCamExplainer(CamExplainer):
    name = "xgradcam"
    description = "XGrad-CAM: axiom-based normalised gradient weights"
    cam_class = XGradCAM


class LayerCamExplainer(CamExplainer):
    name = "layercam"
    description = "LayerCAM: positive gradients weight each location"
    cam_class = LayerCAM


class EigenCamExplainer(CamExplainer):
    name = "eigencam"
    description = "EigenCAM: first principal component of the activations (class-agnostic)"
    cam_class = EigenCAM
    needs_gradients = False


CAM_EXPLAINERS: tuple[type[CamExplainer], ...] = (
    GradCamExplainer,
    GradCamPlusPlusExplainer,
    ScoreCamExplainer,
    HiResCamExplainer,
    XGradCamExplainer,
    LayerCamExplainer,
    EigenCamExplainer,
)
