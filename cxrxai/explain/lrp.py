"""Layer-wise relevance propagation with zennit, made sound on timm models.

zennit's stock canonizers do not recognise timm's blocks: on timm's ResNet, DenseNet and
EfficientNet-Lite, LRP "runs" but relevance is not conserved (each residual addition
doubles it: 2^9 = 512 on Lite0). The canonizers below are written here because no
library ships them for timm; they follow zennit's own torchvision ResNet canonizer:

- residual additions go through zennit's ``Sum`` layer (the ``Norm`` rule then splits
  relevance between shortcut and branch in proportion to their contributions);
- BatchNorm is merged into the preceding convolution (zennit's
  ``SequentialMergeBatchNorm``) and, now an identity, taken out of the network for the
  duration; BatchNorm that follows a concatenation (DenseNet) cannot
  be merged and keeps zennit's ``Pass`` rule, like the activation fused with it;
- in-place ReLUs are switched off for the duration (hooks need the input kept).

Used with a zennit composite (``canonizers=canonizers_for(model)``), all changes are
undone when the ``with composite.context(model)`` block ends; :func:`relevance` instead
canonizes a private copy of the network once and keeps it (:func:`canonize`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
from zennit.core import Composite
from zennit.layer import Sum

from cxrxai.checkpoint import ModelBundle
from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import Explainer

IDENTITY_EPS = 1e-10


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


class TimmMergeBatchNorm(SequentialMergeBatchNorm):
    """zennit's BatchNorm merge, paired the way timm models are built.

    zennit pairs a linear layer with a BatchNorm that follows it among the model's
    *leaves*; timm's ``BatchNormAct2d`` holds its activation as a child, so it is not a
    leaf and the stock canonizer silently merges nothing. Here a convolution or linear
    layer is paired with a BatchNorm that is its next sibling in the same parent (so a
    BatchNorm after a concatenation, as in DenseNet, is never merged into one of the
    concatenated convolutions) and has as many channels; the merge itself is zennit's.
    """

    def apply(self, root_module: nn.Module) -> list[Canonizer]:
        pairs = []
        for parent in root_module.modules():
            if isinstance(parent, nn.modules.batchnorm._BatchNorm):
                continue
            children = list(parent.named_children())
            for (_, first), (name, second) in itertools.pairwise(children):
                if (
                    isinstance(first, self.linear_type)
                    and isinstance(second, self.batch_norm_type)
                    and first.weight.shape[0] == second.num_features
                ):
                    pairs.append((parent, first, name, second))
        instances: list[Canonizer] = []
        for parent, first, name, second in pairs:
            instance = self.copy()
            instance.register((first,), second)
            instance.bypass(parent, name)
            instances.append(instance)
        return instances

    def register(self, linears: tuple[nn.Module, ...], batch_norm: nn.Module) -> None:
        # zennit leaves eps in place, so the "identity" BatchNorm still divides by
        # sqrt(1 + eps) (0.05 % per layer, 0.5 % over Lite0). Newer torch rejects eps = 0;
        # 1e-10 is exact too, since 1 + 1e-10 rounds to 1 in float32 (and bf16).
        super().register(linears, batch_norm)
        self.saved_eps = batch_norm.eps
        batch_norm.eps = IDENTITY_EPS
        self.parent: nn.Module | None = None

    def bypass(self, parent: nn.Module, name: str) -> None:
        """Take the merged BatchNorm - now an exact identity - out of the network while
        the rules are hooked in: it then costs neither a pass over the activations nor
        zennit's ``Pass`` hooks in the forward and backward pass (relevance is the same).
        timm's ``BatchNormAct2d`` leaves its dropout and activation in its place."""
        norm = self.batch_norm
        tail = [getattr(norm, key) for key in ("drop", "act") if hasattr(norm, key)]
        self.parent, self.name = parent, name
        setattr(parent, name, nn.Sequential(*tail) if tail else nn.Identity())

    def remove(self) -> None:
        if self.parent is not None:
            setattr(self.parent, self.name, self.batch_norm)
        super().remove()
        self.batch_norm.eps = self.saved_eps


def _summed(module: nn.Module, shortcut: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    return module.canonizer_sum(torch.stack([shortcut, branch], dim=-1))


class TimmEfficientNetBlockCanonizer(AttributeCanonizer):
    """timm ``InvertedResidual`` / ``DepthwiseSeparableConv`` with a skip: the block's own
    forward computes the branch (its skip switched off), then ``Sum`` adds the shortcut."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

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
    addition through ``Sum`` (the stock ``ResNetCanonizer`` only knows torchvision's)."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: nn.Module) -> dict[str, Any] | None:
        from timm.models.resnet import BasicBlock, Bottleneck

        if isinstance(module, Bottleneck):
            return {"forward": cls.bottleneck_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, BasicBlock):
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


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """The canonizers this model needs (always: merge BatchNorm, no in-place ops)."""
    found: list[Canonizer] = [InplaceOffCanonizer(), TimmMergeBatchNorm()]
    module_types = {type(m).__name__ for m in model.modules()}
    if module_types & {"InvertedResidual", "DepthwiseSeparableConv"}:
        found.append(TimmEfficientNetBlockCanonizer())
    if module_types & {"Bottleneck", "BasicBlock"}:
        found.append(TimmResNetBlockCanonizer())
    return found


def canonize(model: nn.Module) -> None:
    """Apply :func:`canonizers_for` to ``model`` for good: LRP's private copy of the
    network (:meth:`ModelBundle.private_model`) is canonized once, not on every call.
    Merging 49 BatchNorms and finding the blocks took 9 ms of each Lite0 map on one CPU
    thread, 15 % of an LRP map at 32 px (where, as on a GPU, per-module overhead rather
    than arithmetic sets the time). The composites' rules are still hooked in and
    removed on every call."""
    model.cxrxai_canonizers = [  # kept with the copy they changed
        instance for canonizer in canonizers_for(model) for instance in canonizer.apply(model)
    ]


CompositeFactory = Callable[[torch.Tensor, ModelBundle], Composite]


def _gamma_box(batch: torch.Tensor, bundle: ModelBundle) -> Composite:
    mean = torch.tensor(bundle.card.normalisation["mean"], device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(bundle.card.normalisation["std"], device=batch.device).view(1, -1, 1, 1)
    low = ((0.0 - mean) / std).expand_as(batch)
    high = ((1.0 - mean) / std).expand_as(batch)
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
    composites: ClassVar[tuple[str, ...]] = tuple(COMPOSITES)

    def __init__(self, composite: str = "epsilon-plus-flat") -> None:
        super().__init__(composite=composite)
        self.composite = composite

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        attribution, _ = relevance(bundle, batch, index, self.composite)
        return attribution[0].sum(0)
