"""Batch augmentation on tensors (the whole batch at once, on the training device).

Mild, anatomy-preserving changes only: no horizontal flip (it would move the heart to the
right), small rotations, zooms and shifts, and exposure/contrast changes like those between
X-ray machines. A segmentation target (the lung fields) is warped by the same transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentRanges:
    """How far each random change may go."""

    max_rotation_deg: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.15)
    max_shift: float = 0.06
    max_gamma: float = 0.25
    max_contrast: float = 0.15


CLASSIFIER_RANGES = AugmentRanges()


def augment_batch(
    batch01: torch.Tensor,
    generator: torch.Generator,
    ranges: AugmentRanges = CLASSIFIER_RANGES,
    masks: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Randomly transform a (B, 1, H, W) batch in [0, 1]; returns the same shape, in [0, 1].

    With ``masks`` (B, 1, H, W) in {0, 1}, returns ``(images, masks)``, the masks moved by
    the same rotation, zoom and shift (bilinear, then cut at 0.5) and untouched by the
    exposure changes.
    """
    size = batch01.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(size, generator=generator) * (high - low) + low

    angle = uniform(-ranges.max_rotation_deg, ranges.max_rotation_deg) * math.pi / 180.0
    zoom = uniform(*ranges.scale_range)
    shift_x = uniform(-ranges.max_shift, ranges.max_shift)
    shift_y = uniform(-ranges.max_shift, ranges.max_shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    ).to(batch01)
    grid = F.affine_grid(theta, list(batch01.shape), align_corners=False)
    # Border padding: a black wedge would be a shortcut feature no real X-ray has.
    warped = F.grid_sample(
        batch01, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    gamma = torch.exp(uniform(-ranges.max_gamma, ranges.max_gamma)).to(batch01).view(-1, 1, 1, 1)
    contrast = (1.0 + uniform(-ranges.max_contrast, ranges.max_contrast)).to(batch01)
    warped = warped.clamp(0.0, 1.0) ** gamma
    mean = warped.mean(dim=(2, 3), keepdim=True)
    images = ((warped - mean) * contrast.view(-1, 1, 1, 1) + mean).clamp(0.0, 1.0)
    if masks is None:
        return images
    # Zero padding for the target: no lung outside the original field of view.
    moved = F.grid_sample(
        masks.to(batch01), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return images, (moved > 0.5).to(batch01)
