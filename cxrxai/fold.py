"""A forward-only copy of a network with BatchNorm folded into the convolution before it.

Why: in evaluation mode a BatchNorm after a convolution is an affine map per channel,
yet it runs as a separate pass over every activation - a large share of the demo model's
forward time on the CPU (docs/benchmarks.md). Folding it into the
convolution's weights and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) removes the
pass. torch.fx's ``fuse`` would find the pairs from a traced graph, but timm's
EfficientNet does not trace (data-dependent padding), so the pairs are found by running
the network once: a BatchNorm whose input *is* a convolution's output tensor. The folded
copy is kept only if its logits match the original's on a random batch; otherwise the
original is used. Gradient methods (CAM, LRP, SmoothGrad) keep the original network: they
need its layers by name and its BatchNorm modules.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# Folding reorders floating-point operations: logits may move by float32 rounding only.
RTOL, ATOL = 1e-3, 1e-4


def _timm_layers() -> tuple[type, type]:
    """timm's Conv2dSame and BatchNormAct2d (imported when first needed, like
    :mod:`cxrxai.checkpoint` imports timm)."""
    from timm.layers import BatchNormAct2d, Conv2dSame

    return Conv2dSame, BatchNormAct2d


def _foldable_conv(module: nn.Module) -> bool:
    """A convolution whose forward is a plain conv2d with its own weight and bias: torch's
    Conv2d, or timm's Conv2dSame (zero "same" padding first). Subclasses that transform
    their weights (weight standardisation, say) are left alone."""
    return type(module) in (nn.Conv2d, _timm_layers()[0])


def example_input(model: nn.Module, side: int = 64) -> torch.Tensor:
    """A fixed random batch of one image the network takes (its first convolution's
    channels, ``side`` px), to find the pairs of a network no caller gave an input for."""
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(1, first.in_channels, side, side, generator=generator)
    return example.to(first.weight.device)


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, batch-norm name) where the BatchNorm2d consumed that Conv2d's output."""
    names = {module: name for name, module in model.named_modules()}
    # Every convolution output stays referenced until the pass ends, so that no id() is
    # reused by a later tensor and a match means the very same tensor.
    produced: list[torch.Tensor] = []
    produced_by: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def after_conv(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        produced.append(output)
        produced_by[id(output)] = names[module]

    def before_bn(module: nn.Module, inputs: tuple) -> None:
        source = produced_by.get(id(inputs[0]))
        if source is not None:
            pairs.append((source, names[module]))

    for module in model.modules():
        if _foldable_conv(module):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    # a convolution feeding two BatchNorms cannot be folded into both
    convs = [conv for conv, _ in pairs]
    return [(conv, bn) for conv, bn in pairs if convs.count(conv) == 1]


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What a BatchNorm module does after normalising: nothing for torch's; dropout and
    activation for timm's ``BatchNormAct2d``."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    return nn.Sequential(*(getattr(bn, name) for name in ("drop", "act")))


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_batch_norms(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A folded copy of an eval-mode ``model`` and the number of BatchNorms folded; the
    model itself (and 0) when nothing folds or the folded logits differ."""
    if model.training:
        return model, 0
    # Decide in float32 even when called under bf16 autocast: bf16 rounding alone would
    # fail the logit check.
    with torch.autocast(example.device.type, enabled=False):
        return _fold(model, example)


def _fold(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    pairs = conv_bn_pairs(model, example)
    if not pairs:
        return model, 0
    folded = copy.deepcopy(model)
    count = len(fold_pairs(folded, pairs))
    with torch.inference_mode():
        expected, got = model(example), folded(example)
    if count == 0 or not _same_logits(got, expected):
        return model, 0
    return folded, count


Folded = list[tuple[str, nn.Module, str, nn.Module]]  # what fold_pairs replaced, to undo


def fold_pairs(model: nn.Module, pairs: list[tuple[str, str]]) -> Folded:
    """Fold each (conv, BatchNorm) pair of ``model`` in place: the convolution replaced by
    one with the BatchNorm in its weights, the BatchNorm by what follows it in its own
    forward (nothing, or timm's dropout and activation). Returns the modules replaced, for
    :func:`unfold`. Used by the forward-only copy and by LRP's canonization alike."""
    replaced: Folded = []
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        if type(bn) not in (nn.BatchNorm2d, _timm_layers()[1]) or bn.running_mean is None:
            continue  # an unknown forward, or batch statistics even in eval mode
        conv = model.get_submodule(conv_name)
        _set(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_name, _after_norm(bn))
        replaced.append((conv_name, conv, bn_name, bn))
    return replaced


def unfold(model: nn.Module, replaced: Folded) -> None:
    """Put back the modules :func:`fold_pairs` replaced."""
    for conv_name, conv, bn_name, bn in reversed(replaced):
        _set(model, bn_name, bn)
        _set(model, conv_name, conv)


def _same_logits(got: object, expected: object) -> bool:
    """Equal within float rounding; outputs other than one tensor are never trusted."""
    if not (isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor)):
        return False
    return got.shape == expected.shape and torch.allclose(got, expected, rtol=RTOL, atol=ATOL)
