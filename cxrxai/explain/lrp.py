"""Layer-wise relevance propagation with zennit, made sound on timm, torchvision and
torchxrayvision models.

zennit's stock canonizers do not recognise timm's blocks: on timm's ResNet, DenseNet and
EfficientNet-Lite, LRP "runs" but relevance is not conserved (each residual addition
doubles it: 2^9 = 512 on Lite0). The canonizers for timm's blocks are written here because
no library ships them; torchvision's ResNet blocks (also inside torchxrayvision's ResNet)
get zennit's own. Blocks are matched by type, never by class name (timm's and
torchvision's ResNet blocks share theirs), and a model with a module none of this knows is
refused by name (:func:`check_supported`). The timm canonizers follow zennit's torchvision
ResNet canonizer:

- residual additions go through zennit's ``Sum`` layer (the ``Norm`` rule then splits
  relevance between shortcut and branch in proportion to their contributions);
- BatchNorm is folded into the convolution that feeds it (:mod:`cxrxai.fold`, the
  folding of the forward-only copy) and leaves the network for the duration; BatchNorm
  that follows a concatenation (DenseNet) cannot be merged and keeps zennit's ``Pass``
  rule, like the activation fused with it;
- in-place ReLUs are switched off for the duration (hooks need the input kept).

Used with a zennit composite (``canonizers=canonizers_for(model)``), all changes are
undone when the ``with composite.context(model)`` block ends; :func:`relevance` instead
canonizes a private copy of the network once and keeps it (:func:`canonize`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torchvision.models.densenet as tv_densenet
import torchvision.models.resnet as tv_resnet
from timm.layers import BatchNormAct2d, SelectAdaptivePool2d
from timm.models import densenet as timm_densenet
from timm.models import efficientnet as timm_efficientnet
from timm.models import resnet as timm_resnet
from torch import nn
from zennit.canonizers import AttributeCanonizer, Canonizer
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
from zennit.core import Composite
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import Explainer, Setting
from cxrxai.fold import Folded, conv_bn_pairs, example_input, fold_pairs, unfold
from cxrxai.runner import ModelBundle, normalised_value
from cxrxai.thirdparty.timm_blocks import DepthwiseSeparableConv, InvertedResidual


class InplaceOffCanonizer(Canonizer):
    """Sets ``inplace=False`` on every module that has it, and restores it afterwards."""

    def __init__(self) -> None:
        self.saved: list[tuple[nn.Module, bool]] = []

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        instance = InplaceOffCanonizer()
        for module in root_module.modules():
            if getattr(module, "inplace", False) is True:
                instance.saved.append((module, True))
                module.inplace = False
        return [instance]

    def register(self) -> None:  # applied in apply(); nothing to register
        pass

    def remove(self) -> None:
        for module, value in self.saved:
            module.inplace = value
        self.saved = []

    def copy(self) -> InplaceOffCanonizer:
        return InplaceOffCanonizer()


class FoldBatchNormCanonizer(Canonizer):
    """Every BatchNorm that follows a convolution folded into it, with the folding the
    forward-only copy uses (:func:`cxrxai.fold.fold_pairs`; the pairs found from the data
    flow of one forward pass), undone by :meth:`remove`. The merged BatchNorm leaves the
    network entirely (timm's ``BatchNormAct2d`` leaves its dropout and activation): no
    pass over the activations, no ``Pass`` hooks, and no identity BatchNorm still dividing
    by sqrt(1 + eps) (0.5 % over Lite0 with zennit's own merge). A BatchNorm after a
    concatenation (DenseNet) is not fed by one convolution and keeps the ``Pass`` rule.
    Written here because zennit's ``SequentialMergeBatchNorm`` pairs layers among the
    model's leaves, and timm's ``BatchNormAct2d`` is not a leaf: it merged nothing."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None
        self.folded: Folded = []

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        instance = FoldBatchNormCanonizer()
        pairs = conv_bn_pairs(root_module, example_input(root_module))
        instance.model, instance.folded = root_module, fold_pairs(root_module, pairs)
        return [instance]

    def register(self) -> None:  # applied in apply(); nothing to register
        pass

    def remove(self) -> None:
        if self.model is not None:
            unfold(self.model, self.folded)
        self.model, self.folded = None, []

    def copy(self) -> FoldBatchNormCanonizer:
        return FoldBatchNormCanonizer()


def _summed(module: nn.Module, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    return module.canonizer_sum(torch.stack([shortcut, branch], dim=-1))


class TimmEfficientNetBlockCanonizer(AttributeCanonizer):
    """timm ``InvertedResidual`` / ``DepthwiseSeparableConv`` with a skip: the block's own
    forward computes the branch (its skip switched off), then ``Sum`` adds the shortcut."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, (InvertedResidual, DepthwiseSeparableConv)) and module.has_skip:
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.has_skip = False
        try:
            branch = type(self).forward(self, x)
        finally:
            self.has_skip = True
        return _summed(self, x, branch)


class TimmResNetBlockCanonizer(AttributeCanonizer):
    """timm ``Bottleneck`` / ``BasicBlock``: the same computation with the residual
    addition through ``Sum`` (zennit's ``ResNetCanonizer`` only knows torchvision's)."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, timm_resnet.Bottleneck):
            return {"forward": cls.bottleneck_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, timm_resnet.BasicBlock):
            return {"forward": cls.basic_forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def _tail(self: nn.Module, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return _summed(self, shortcut, x)

    @staticmethod
    def bottleneck_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(out)))))
        out = self.bn3(self.conv3(out))
        return self.act3(TimmResNetBlockCanonizer._tail(self, out, x))

    @staticmethod
    def basic_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        out = self.bn2(self.conv2(out))
        return self.act2(TimmResNetBlockCanonizer._tail(self, out, x))


class DenseNetHeadCanonizer(AttributeCanonizer):
    """torchvision's and torchxrayvision's ``DenseNet`` end in a functional ReLU and
    average pooling, which zennit cannot hook: relevance then passes the pooling by its
    gradient (1/N to every pixel, the inactive ones too) and the ReLU's gradient drops
    the share of the inactive ones (12 % of the logit on a random xrv DenseNet-121). The
    same head as modules gets zennit's rules (Pass, Norm) and conserves relevance."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        if isinstance(module, (tv_densenet.DenseNet, *_xrv_types("DenseNet"))):
            return {
                "forward": cls.forward.__get__(module),
                "canonizer_relu": nn.ReLU(),
                "canonizer_pool": nn.AdaptiveAvgPool2d(1),
            }
        return None

    @staticmethod
    def forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
        features = self.canonizer_pool(self.canonizer_relu(self.features(x)))
        return self.classifier(features.flatten(1))


# Residual blocks and the canonizer that routes their addition through zennit's Sum, by
# type: torchvision's blocks (also inside torchxrayvision's ResNet) share the class names
# of timm's, so names cannot tell them apart.
BLOCK_CANONIZERS: tuple[tuple[tuple[type, ...], Callable[[], Canonizer]], ...] = (
    ((InvertedResidual, DepthwiseSeparableConv), TimmEfficientNetBlockCanonizer),
    ((timm_resnet.Bottleneck, timm_resnet.BasicBlock), TimmResNetBlockCanonizer),
    ((tv_resnet.Bottleneck,), ResNetBottleneckCanonizer),
    ((tv_resnet.BasicBlock,), ResNetBasicBlockCanonizer),
)


def _block_canonizers() -> tuple[tuple[tuple[type, ...], Callable[[], Canonizer]], ...]:
    """:data:`BLOCK_CANONIZERS` and the DenseNet head of torchvision and torchxrayvision."""
    densenets = (tv_densenet.DenseNet, *_xrv_types("DenseNet"))
    return (*BLOCK_CANONIZERS, (densenets, DenseNetHeadCanonizer))


# Modules whose own forward only runs their children one after another or concatenates
# them (DenseNet), so relevance flows through them by the rules of their children. Any
# module that is neither this, a layer a rule knows, nor a block above is refused.
SEQUENTIAL_MODULES: tuple[type, ...] = (
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    timm_efficientnet.EfficientNet,
    timm_resnet.ResNet,
    timm_densenet.DenseNet,
    timm_densenet.DenseBlock,
    timm_densenet.DenseLayer,
    timm_densenet.DenseTransition,
    SelectAdaptivePool2d,
    BatchNormAct2d,
    tv_resnet.ResNet,
    tv_densenet._DenseBlock,
    tv_densenet._DenseLayer,
    tv_densenet._Transition,
)

# Layers a rule of zennit's composites handles (or that pass their input on unchanged).
RULE_LAYERS: tuple[type, ...] = (
    nn.Conv2d,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool2d,
    nn.AdaptiveMaxPool2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Identity,
    nn.Flatten,
    Sum,
)


def _xrv_types(*names: str) -> tuple[type, ...]:
    """torchxrayvision's model classes of these names, once torchxrayvision is imported (a
    model built by it has imported it), so that LRP on a timm model does not pay for
    importing torchxrayvision."""
    xrv_models = sys.modules.get("torchxrayvision.models")
    if xrv_models is None:
        return ()
    return tuple(getattr(xrv_models, name) for name in names if hasattr(xrv_models, name))


def check_supported(model: nn.Module) -> None:
    """Refuse, by name, a model with a module LRP cannot pass relevance through soundly:
    a residual block no canonizer knows (each addition would double the relevance), a
    gating block (squeeze-and-excitation), attention, or any other module whose forward
    is not one of the known layers, blocks or sequential containers."""
    blocks = tuple(t for types, _ in _block_canonizers() for t in types)
    xrv_parts = _xrv_types("ResNet", "_DenseBlock", "_DenseLayer", "_Transition")
    known = (*RULE_LAYERS, *SEQUENTIAL_MODULES, *xrv_parts, *blocks)
    for name, module in model.named_modules():
        if name and not isinstance(module, known):
            kind = type(module)
            raise CxrxaiError(
                f"LRP cannot explain this model soundly: it does not know how relevance "
                f"passes through '{name}' ({kind.__module__}.{kind.__qualname__}), so "
                "relevance would not be conserved. LRP supports the EfficientNet-Lite, "
                "ResNet and DenseNet models of timm, torchvision and torchxrayvision; use "
                "another method (Grad-CAM works on any convolutional network)."
            )


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers this model needs (always: merge BatchNorm, no in-place ops, then one
    per kind of residual block it holds). A model with a module LRP does not know is
    refused (:func:`check_supported`)."""
    check_supported(model)
    found: list[Canonizer] = [InplaceOffCanonizer(), FoldBatchNormCanonizer()]
    modules = list(model.modules())
    for types, canonizer in _block_canonizers():
        if any(isinstance(module, types) for module in modules):
            found.append(canonizer())
    return found


def canonize(model: nn.Module) -> None:
    """Apply :func:`canonizers_for` to ``model`` for good: LRP's private copy of the
    network (:meth:`ModelBundle.private_model`) is canonized once, not on every call
    (folding and finding the blocks was a sizeable share of a map where per-module
    overhead rather than arithmetic sets the time, as on a GPU; docs/benchmarks.md). The
    composites' rules are still hooked in and removed on every call."""
    model.cxrxai_canonizers = [  # kept with the copy they changed
        instance for canonizer in canonizers_for(model) for instance in canonizer.apply(model)
    ]


CompositeFactory = Callable[[torch.Tensor, ModelBundle], Composite]


def _gamma_box(batch: torch.Tensor, bundle: ModelBundle) -> Composite:
    low = normalised_value(bundle.card, 0.0, batch.device).expand_as(batch)
    high = normalised_value(bundle.card, 1.0, batch.device).expand_as(batch)
    return EpsilonGammaBox(low=low, high=high)


# Rules only: the network they are hooked into is already canonized (canonize()).
COMPOSITES: dict[str, CompositeFactory] = {
    "epsilon-plus-flat": lambda batch, bundle: EpsilonPlusFlat(),
    "epsilon-gamma-box": _gamma_box,
    "epsilon-alpha2-beta1": lambda batch, bundle: EpsilonAlpha2Beta1(),
}


def relevance(
    bundle: ModelBundle, batch: torch.Tensor, index: int, composite: str = "epsilon-plus-flat"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input relevance (1, C, h, w), model output (1, n)); output relevance = the logit."""
    if composite not in COMPOSITES:
        raise CxrxaiError(f"Unknown LRP composite '{composite}'; choose one of {list(COMPOSITES)}")
    inputs = batch.detach().clone().requires_grad_(True)
    # The canonizers change the network and the rules hook it: on a private copy, so that
    # other sessions' threads never see a canonized or hooked shared network.
    with bundle.private_model(prepare=canonize) as model:
        rules = COMPOSITES[composite](batch, bundle)
        with rules.context(model) as modified:
            output = modified(inputs)
            one_hot = torch.zeros_like(output)
            one_hot[:, index] = 1.0
            (grad,) = torch.autograd.grad(output, inputs, grad_outputs=output * one_hot)
    # With zennit's rules hooked in, the input gradient IS the input relevance.
    return grad, output.detach()


class LrpExplainer(Explainer):
    name = "lrp"
    description = "LRP (zennit): EpsilonPlusFlat default, timm-aware canonizers; signed"
    needs_gradients = True
    settings = (
        Setting(
            "composite", str, "epsilon-plus-flat", "LRP rules for the layers (zennit composite)",
            choices=tuple(COMPOSITES),
        ),
    )  # fmt: skip

    def check(self, bundle: ModelBundle) -> None:
        check_supported(bundle.model)

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        attribution, _ = relevance(bundle, batch, index, self.composite)
        return attribution[0].sum(0)
