"""BatchNorm folding for forward-only evaluations: which pairs fold, equal logits, and the
cases that must not fold."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from cxrxai.fold import ATOL, RTOL, fold_batch_norms


def with_statistics(model: nn.Module) -> nn.Module:
    """Random BatchNorm statistics and affine parameters, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            if module.affine:
                module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return model.eval()


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        ("resnet18", 20),  # every BatchNorm follows a convolution
        ("tf_efficientnet_lite0", 49),  # timm BatchNormAct2d, "same"-padded Conv2dSame
        # 58 dense layers' second BatchNorm and the stem's; the BatchNorms after the
        # concatenations (and the final one) have no convolution before them
        ("densenet121", 59),
    ],
)
def test_folds_conv_batch_norm_pairs_with_equal_logits(architecture, expected):
    torch.manual_seed(0)
    model = with_statistics(timm.create_model(architecture, pretrained=False, num_classes=3))
    example = torch.randn(2, 3, 64, 64)
    before = batch_norms(model)
    folded, count = fold_batch_norms(model, example)
    assert count == expected
    assert batch_norms(folded) == before - expected
    assert batch_norms(model) == before  # the original keeps its layers
    other = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(other), model(other), rtol=RTOL, atol=ATOL)


class SharedConv(nn.Module):
    """A convolution whose output feeds a BatchNorm and, unnormalised, a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class TwoNorms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn1(y) * self.bn2(y)


class StandardisedConv(nn.Conv2d):
    """Weight standardisation: folding a scale into the weights would be undone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / (
            self.weight.std((1, 2, 3), keepdim=True) + 1e-5
        )
        return nn.functional.conv2d(x, weight, self.bias, padding=1)


class TwoOutputs(nn.Module):
    """A network returning a tuple: its outputs cannot be checked, so it is not folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.bn(self.conv(x))
        return y, y.mean()


@pytest.mark.parametrize(
    "model",
    [
        TwoOutputs(),
        SharedConv(),  # folding would change the residual: detected by the logit check
        TwoNorms(),  # one convolution cannot absorb two BatchNorms
        nn.Sequential(StandardisedConv(3, 3, 3), nn.BatchNorm2d(3)),
        nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3, track_running_stats=False)),
    ],
    ids=["tuple-output", "shared-output", "two-norms", "weight-standardised", "batch-statistics"],
)
def test_what_must_not_fold_is_left_alone(model):
    model = with_statistics(model)
    example = torch.randn(2, 3, 16, 16)
    folded, count = fold_batch_norms(model, example)
    assert folded is model and count == 0


def test_training_mode_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.BatchNorm2d(3)).train()
    assert fold_batch_norms(model, torch.randn(2, 3, 8, 8)) == (model, 0)


def test_bundle_refolds_after_weights_change_in_place(tiny_checkpoint):
    from cxrxai.checkpoint import load_checkpoint

    bundle = load_checkpoint(tiny_checkpoint(size=48), device="cpu")
    batch = bundle.preprocess(np.random.default_rng(0).random((48, 48), dtype=np.float32))
    first = bundle.inference_model(batch)
    assert first is not bundle.model and batch_norms(first) == 0
    assert bundle.inference_model(batch) is first  # cached while the weights stay
    with torch.no_grad():
        bundle.model.fc.weight.mul_(3.0)  # what the sanity check's re-initialisation does
    second = bundle.inference_model(batch)
    assert second is not first
    with torch.inference_mode():
        torch.testing.assert_close(
            bundle.forward_batch(batch, full=False), bundle.model(batch), rtol=1e-4, atol=1e-5
        )
    bundle.fold_batch_norm = False
    assert bundle.inference_model(batch) is bundle.model


def test_folds_under_bf16_autocast():
    """Forward-only batches may run under bf16 autocast: the fold is still decided in fp32."""
    model = with_statistics(timm.create_model("resnet18", pretrained=False, num_classes=3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        folded, count = fold_batch_norms(model, torch.randn(2, 3, 32, 32))
    assert count == 20 and folded is not model
