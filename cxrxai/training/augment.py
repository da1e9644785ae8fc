"""Batch augmentation on tensors (the whole batch at once, on the training device).

Mild, anatomy-preserving changes only: no horizontal flip (it would move the heart to the
right), small rotations, zooms and shifts, and exposure/contrast changes like those between
X-ray machines.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(
    batch01: torch.Tensor,
    generator: torch.Generator,
    max_rotation_deg: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.15),
    max_shift: float = 0.06,
    max_gamma: float = 0.25,
    max_contrast: float = 0.15,
) -> torch.Tensor:
    """Randomly transform a (B, 1, H, W) batch in [0, 1]; returns the same shape, in [0, 1]."""
    size = batch01.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(size, generator=generator) * (high - low) + low

    angle = uniform(-max_rotation_deg, max_rotation_deg) * math.pi / 180.0
    zoom = uniform(*scale_range)
    shift_x, shift_y = uniform(-max_shift, max_shift), uniform(-max_shift, max_shift)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
    ).to(batch01)
    grid = F.affine_grid(theta, list(batch01.shape), align_corners=False)
    # Border padding: a black wedge would be a shortcut feature no real X-ray has.
    warped = F.grid_sample(
        batch01, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    gamma = torch.exp(uniform(-max_gamma, max_gamma)).to(batch01).view(-1, 1, 1, 1)
    contrast = (1.0 + uniform(-max_contrast, max_contrast)).to(batch01).view(-1, 1, 1, 1)
    warped = warped.clamp(0.0, 1.0) ** gamma
    mean = warped.mean(dim=(2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean).clamp(0.0, 1.0)
