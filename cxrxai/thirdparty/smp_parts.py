"""segmentation_models_pytorch's model parts. ``SegmentationModel.forward`` runs
``encoder`` -> ``decoder`` -> ``segmentation_head`` and returns the masks only; the
out-of-distribution check also needs the encoder's deepest features, so this runs the
same three attributes itself (one pass instead of two)."""

from __future__ import annotations

import torch
from torch import nn


def masks_and_features(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask logits (B, classes, H, W), the deepest encoder features (B, C, h, w))."""
    features = model.encoder(batch)
    masks = model.segmentation_head(model.decoder(features))
    return masks, features[-1]
