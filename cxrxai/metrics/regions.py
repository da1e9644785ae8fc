"""Heatmap -> binary region, the ways the studies did it, and region -> boxes.

All region functions take a batch of maps (B, H, W) (or one (H, W) map) on any device and
return a bool tensor of the same shape on that device:

- :func:`top_percent`: the top p % pixels (the VinDr study, p = 1, 2, 3, 5, 8, 10, 20);
- :func:`fixed_threshold`: min-max normalised map >= t;
- :func:`otsu_filled`: CheXlocalize's segmentation, pixel for pixel (min-max normalise,
  truncate to 0-255, Otsu's threshold, fill the contours);
- :func:`top_superpixels`: LIME's top-N positive superpixels (the first study's masks).

Any of them can be restricted to an anatomical mask with :func:`restrict`.
:func:`region_boxes` turns a region into boxes exactly as the VinDr study's code did.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import cpu_kernels

TOP_PERCENTS = (1, 2, 3, 5, 8, 10, 20)
REGION_MODES = ("top-percent", "threshold", "otsu", "top-superpixels")


def _batched(maps: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if maps.ndim == 2:
        return maps[None], True
    if maps.ndim != 3:
        raise CxrxaiError(f"Expected maps of shape (B, H, W) or (H, W), got {tuple(maps.shape)}")
    return maps, False


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1]; a constant map becomes all zeros."""
    batch, single = _batched(maps.float())
    flat = batch.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low).clamp(min=torch.finfo(torch.float32).tiny)
    out = (batch - low) / span
    return out[0] if single else out


def top_percent(maps: torch.Tensor, percent: float) -> torch.Tensor:
    """Pixels at or above each map's k-th largest value, k = round(percent % of H*W).

    Ties with the k-th value are kept (so the region never depends on pixel order); a map
    whose top values are tied can therefore cover more than ``percent`` %.
    """
    if not 0 < percent <= 100:
        raise CxrxaiError(f"percent must be in (0, 100], got {percent}")
    batch, single = _batched(maps.float())
    flat = batch.flatten(1)
    k = max(1, round(flat.shape[1] * percent / 100.0))
    if batch.device.type == "cpu":  # one fused selection + threshold per map (numba)
        values = cpu_kernels.as_numpy(batch)
        out = torch.from_numpy(cpu_kernels.run(cpu_kernels.top_k_regions, values, k))
    else:
        kth = flat.topk(k, dim=1).values[:, -1].view(-1, 1, 1)
        out = batch >= kth
    return out[0] if single else out


def fixed_threshold(maps: torch.Tensor, threshold: float) -> torch.Tensor:
    """Min-max normalised map >= ``threshold`` (in [0, 1])."""
    if not 0.0 <= threshold <= 1.0:
        raise CxrxaiError(f"threshold must be in [0, 1], got {threshold}")
    return minmax(maps) >= threshold


def fill_contours_as_chexlocalize(binary: np.ndarray) -> np.ndarray:
    """A uint8 (H, W) binary image -> bool region: every contour OpenCV finds
    (``RETR_TREE``, ``CHAIN_APPROX_SIMPLE``) with more than one point drawn as a polygon,
    outline and inside, by Pillow - CheXlocalize's ``cam_to_segmentation``. Written here
    because CheXlocalize is a script collection, not a package; drawn with Pillow and not
    ``cv2.drawContours`` because the two rasterise polygon edges differently, and a
    single-pixel contour is dropped as CheXlocalize drops it."""
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    canvas = Image.new("1", (binary.shape[1], binary.shape[0]))
    draw = ImageDraw.Draw(canvas)
    for contour in contours:
        if len(contour) > 1:
            draw.polygon([(int(x), int(y)) for x, y in contour[:, 0]], outline=1, fill=1)
    # not np.array(canvas, dtype=bool): a mode "1" image gives bools stored as byte 255,
    # which kernels reading bytes (and torch copies made with one thread) count as 255
    return np.asarray(canvas.convert("L")) > 0


def otsu_filled(maps: torch.Tensor) -> torch.Tensor:
    """CheXlocalize's segmentation, pixel for pixel: min-max normalise, scale to 0-255
    and TRUNCATE to uint8 (``np.uint8(255 * map)``, not rounding), Otsu's threshold, fill
    the contours (:func:`fill_contours_as_chexlocalize`). A constant map has no region.

    Runs per map through OpenCV on the CPU (Otsu and contours are sequential image
    operations OpenCV does well); the result comes back on the maps' device.
    """
    batch, single = _batched(maps.float())
    flat = batch.flatten(1)
    shifted = batch - flat.min(dim=1).values.view(-1, 1, 1)
    peak = shifted.flatten(1).max(dim=1).values.view(-1, 1, 1)
    normalised = (shifted / peak).cpu().numpy()  # float32, as CheXlocalize's torch division
    out = np.zeros(normalised.shape, bool)
    for i, image in enumerate(normalised):
        if not peak[i].item() > 0:
            continue  # a constant map has no region (CheXlocalize would divide 0 by 0)
        scaled = (255 * image).astype(np.uint8)  # truncates, as np.uint8(...) does
        _, binary = cv2.threshold(scaled, 0, int(scaled.max()), cv2.THRESH_OTSU)
        out[i] = fill_contours_as_chexlocalize(binary)
    result = torch.from_numpy(out).to(maps.device)
    return result[0] if single else result


def top_superpixels(values: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` superpixels with the largest positive weight (LIME's
    ``get_image_and_mask(positive_only=True, num_features=n)``) as one (H, W) region.

    ``values``: the LIME heatmap (each superpixel's weight painted over it);
    ``segments``: its superpixel ids (``Heatmap.segments``).
    """
    if n < 1:
        raise CxrxaiError(f"n must be at least 1, got {n}")
    if values.shape != segments.shape:
        raise CxrxaiError(
            f"values {tuple(values.shape)} and segments {tuple(segments.shape)} differ in shape"
        )
    flat = segments.flatten().long()
    count = int(flat.max()) + 1
    sums = torch.zeros(count, device=values.device).index_add_(0, flat, values.flatten().float())
    sizes = torch.bincount(flat, minlength=count).clamp(min=1)
    weights = sums / sizes
    order = torch.argsort(weights, descending=True)[:n]
    chosen = order[weights[order] > 0]
    return torch.isin(segments, chosen)


def restrict(region: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The region inside ``mask`` (a lung mask, say); unchanged when mask is None."""
    if mask is None:
        return region
    if mask.shape[-2:] != region.shape[-2:]:
        raise CxrxaiError(
            f"Restricting mask {tuple(mask.shape)} does not match region {tuple(region.shape)}"
        )
    return region & mask.to(region.device).bool()


def region(
    maps: torch.Tensor,
    mode: str,
    value: float,
    segments: torch.Tensor | None = None,
    within: torch.Tensor | None = None,
) -> torch.Tensor:
    """One entry point for the UI and the batch evaluation.

    ``mode``: "top-percent" (value = p), "threshold" (value = t in [0, 1]), "otsu"
    (value ignored) or "top-superpixels" (value = N; needs ``segments``).
    """
    if mode == "top-percent":
        out = top_percent(maps, value)
    elif mode == "threshold":
        out = fixed_threshold(maps, value)
    elif mode == "otsu":
        out = otsu_filled(maps)
    elif mode == "top-superpixels":
        if segments is None:
            raise CxrxaiError(
                "Mode 'top-superpixels' needs superpixels: use it with LIME or kernel-shap."
            )
        out = top_superpixels(maps, segments, int(value))
    else:
        raise CxrxaiError(f"Unknown region mode '{mode}'; use one of {list(REGION_MODES)}")
    return restrict(out, within)


def region_boxes(region: torch.Tensor | np.ndarray) -> list[tuple[int, int, int, int]]:
    """Each external contour's bounding rectangle, the VinDr study's
    ``cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)`` + ``cv2.boundingRect``, as
    (x0, y0, x1, y1) = (x, y, x + w, y + h) in pixels, like ``Annotation.box``."""
    if isinstance(region, torch.Tensor):
        region = region.detach().cpu().numpy()
    contours, _ = cv2.findContours(
        np.asarray(region).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append((x, y, x + w, y + h))
    return boxes
