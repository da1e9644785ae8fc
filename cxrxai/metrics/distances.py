"""Distances between a predicted region and the truth, in pixels or millimetres.

Both masks are treated as pixel sets (pixel centres on the grid). With d(p, T) the
Euclidean distance from pixel p to the nearest true pixel:

- ``hausdorff``: max(max_{p in P} d(p, T), max_{t in T} d(t, P)) - the Hausdorff distance;
- ``hd95``: the same with each max replaced by the 95th percentile (linear interpolation,
  as ``numpy.percentile``);
- ``mean_distance``: mean_{p in P} d(p, T), directed from prediction to truth. This is
  what the LIME vs Grad-CAM study reports as "Hausdorff distance"; it is a mean surface
  distance, shown under that name.

Distances are NaN unless both masks are non-empty (a distance to nothing is undefined, and
is never turned into a number).

The distances are exact. On the CPU a fused numba kernel per image
(:mod:`cxrxai.metrics.cpu_kernels`: a separable transform restricted to the masks'
bounding box and read only at the other mask's pixels); on a GPU batched torch
operations, so the whole batch stays on the device: a separable transform written here
(row pass by cumulative max, column pass by a chunked minimum over rows) or, for
:func:`distance_to` on the CPU, OpenCV's ``distanceTransform(DIST_L2,
DIST_MASK_PRECISE)``. All are checked against ``scipy.ndimage.distance_transform_edt``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import cpu_kernels

Spacing = tuple[float, float]  # (row, column) millimetres per pixel, DICOM PixelSpacing order
DISTANCES = ("hausdorff", "hd95", "mean_distance")


def _batched(mask: torch.Tensor) -> torch.Tensor:
    if mask.ndim == 2:
        return mask[None]
    if mask.ndim != 3:
        raise CxrxaiError(f"Expected masks of shape (B, H, W) or (H, W), got {tuple(mask.shape)}")
    return mask


def distance_to(mask: torch.Tensor, spacing: Spacing = (1.0, 1.0)) -> torch.Tensor:
    """For every pixel, the distance to the nearest True pixel of its mask (B, H, W);
    inf everywhere for an empty mask. Same device as ``mask``."""
    batch = _batched(mask).bool()
    if batch.device.type == "cpu":
        out = _distance_cpu(batch, spacing)
    else:
        out = _distance_torch(batch, spacing)
    empty = ~batch.flatten(1).any(1)
    out[empty] = float("inf")
    return out if mask.ndim == 3 else out[0]


def _distance_cpu(batch: torch.Tensor, spacing: Spacing) -> torch.Tensor:
    row, col = spacing
    complement = (~batch).to(torch.uint8).numpy()
    out = np.empty(complement.shape, np.float32)
    if row == col:
        for i, image in enumerate(complement):  # written in place: no copy per image
            cv2.distanceTransform(image, cv2.DIST_L2, cv2.DIST_MASK_PRECISE, dst=out[i])
        if row != 1.0:
            out *= row
    else:  # OpenCV has no anisotropic spacing; SciPy does
        from scipy.ndimage import distance_transform_edt

        for i, image in enumerate(complement):
            out[i] = distance_transform_edt(image, sampling=(row, col))
    return torch.from_numpy(out)


def _distance_torch(
    batch: torch.Tensor, spacing: Spacing, chunk_bytes: int = 1 << 30
) -> torch.Tensor:
    """Exact separable EDT: per row the distance to the nearest True pixel, then per
    column min over rows r' of g(r')^2 + ((r - r') * row_spacing)^2."""
    count, height, width = batch.shape
    row_mm, col_mm = spacing
    cols = torch.arange(width, device=batch.device).view(1, 1, width)
    far = 4 * (height + width)
    left = torch.where(batch, cols, -far).cummax(dim=2).values
    right = torch.where(batch, cols, far).flip(2).cummin(dim=2).values.flip(2)
    g = torch.minimum(cols - left, right - cols).float() * col_mm  # (B, H, W)
    g2 = g * g
    rows = torch.arange(height, device=batch.device, dtype=torch.float32) * row_mm
    offsets = (rows.view(-1, 1) - rows.view(1, -1)) ** 2  # (H_out, H_in)
    per_image = height * height * width * 4
    step = max(1, chunk_bytes // per_image)
    out = torch.empty(count, height, width, device=batch.device)
    for start in range(0, count, step):
        part = g2[start : start + step]  # (b, H_in, W)
        candidates = part.unsqueeze(1) + offsets.view(1, height, height, 1)
        out[start : start + step] = candidates.amin(dim=2).sqrt()
    return out


def _directed(
    source: torch.Tensor, target_distance: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """max, 95th percentile and mean over ``source`` pixels of ``target_distance``."""
    flat_source = source.flatten(1)
    maximum = torch.where(flat_source, target_distance.flatten(1), -torch.inf).amax(1)
    if target_distance.device.type == "cpu":
        p95 = _quantile_per_row(target_distance.flatten(1), flat_source, 0.95)
    else:
        values = torch.where(flat_source, target_distance.flatten(1), torch.nan)
        p95 = torch.nanquantile(values, 0.95, dim=1)
    count = flat_source.sum(1, dtype=torch.int32)
    total = torch.where(flat_source, target_distance.flatten(1), 0.0).sum(1)
    mean = torch.where(count > 0, total / count.clamp(min=1), torch.nan)
    return maximum, p95, mean


def _quantile_per_row(values: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """``numpy.percentile(row[valid], 100 q)`` (linear) per row by two selections on the
    valid entries only: on the CPU 4x faster than ``nanquantile``, which sorts whole rows."""
    out = torch.full((len(values),), float("nan"), dtype=values.dtype)
    for i, (row, keep) in enumerate(zip(values, valid, strict=True)):
        chosen = row[keep]
        if len(chosen) == 0:
            continue
        position = q * (len(chosen) - 1)
        low, high = int(position), min(int(position) + 1, len(chosen) - 1)
        a = chosen.kthvalue(low + 1).values
        b = chosen.kthvalue(high + 1).values if high != low else a
        out[i] = a + (position - low) * (b - a)
    return out


def distances(
    pred: torch.Tensor, truth: torch.Tensor, spacing: Spacing = (1.0, 1.0)
) -> dict[str, torch.Tensor]:
    """``hausdorff``, ``hd95`` and ``mean_distance`` (B,) for bool (B, H, W) masks.

    On the CPU a fused per-image kernel (:func:`cxrxai.metrics.cpu_kernels.mask_distances`)
    computes the same numbers as the batched torch code below, which runs on a GPU."""
    if pred.shape[-2:] != truth.shape[-2:]:
        raise CxrxaiError(
            f"Prediction {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in size."
        )
    pred, truth = _batched(pred).bool(), _batched(truth).to(pred.device).bool()
    if pred.device.type == "cpu":
        pred, truth = torch.broadcast_tensors(pred, truth)
        values = cpu_kernels.run(
            cpu_kernels.mask_distances,
            cpu_kernels.as_numpy(pred),
            cpu_kernels.as_numpy(truth),
            *spacing,
        )
        out = torch.from_numpy(values.astype(np.float32))
        return {name: out[:, i] for i, name in enumerate(DISTANCES)}
    return distances_torch(pred, truth, spacing)


def distances_torch(
    pred: torch.Tensor, truth: torch.Tensor, spacing: Spacing = (1.0, 1.0)
) -> dict[str, torch.Tensor]:
    """:func:`distances` as batched torch operations on bool (B, H, W) masks on any
    device (the GPU path; on the CPU the reference for the fused kernel)."""
    to_truth, to_pred = distance_to(truth, spacing), distance_to(pred, spacing)
    max_pt, p95_pt, mean_pt = _directed(pred, to_truth)
    max_tp, p95_tp, _ = _directed(truth, to_pred)
    both = pred.flatten(1).any(1) & truth.flatten(1).any(1)
    nan = torch.full_like(mean_pt, float("nan"))
    return {
        "hausdorff": torch.where(both, torch.maximum(max_pt, max_tp), nan),
        "hd95": torch.where(both, torch.maximum(p95_pt, p95_tp), nan),
        "mean_distance": torch.where(both, mean_pt, nan),
    }
