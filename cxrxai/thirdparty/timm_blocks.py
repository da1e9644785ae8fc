"""timm's EfficientNet blocks. timm defines them only in its private
``timm.models._efficientnet_blocks`` (no public re-export); LRP's canonizers need the types
to route their residual additions through zennit's ``Sum``."""

from __future__ import annotations

from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual

__all__ = ["DepthwiseSeparableConv", "InvertedResidual"]
