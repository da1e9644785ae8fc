"""Run several explainers on one image and write their maps and overlays (CLI back end)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from cxrxai.cases import Annotation
from cxrxai.explain.base import Heatmap, Target
from cxrxai.explain.cache import HeatmapCache
from cxrxai.explain.registry import get_explainer
from cxrxai.render import draw_annotations, overlay
from cxrxai.runner import ModelBundle


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text)


def explain_image(
    bundle: ModelBundle,
    image: np.ndarray,
    methods: Iterable[str],
    out_dir: Path,
    target: Target = None,
    seed: int = 0,
    cache: HeatmapCache | None = None,
    stem: str = "image",
    params: Mapping[str, Mapping[str, Any]] | None = None,
    lungs: Annotation | None = None,
) -> list[tuple[Heatmap, Path, Path]]:
    """For each method (and resolved target): ``<stem>_<method>_<label>.npz`` (the map at
    image resolution, plus superpixels where the method has them) and ``.png`` (overlay).
    ``params``: settings per method name (:mod:`cxrxai.explain.params`).

    ``lungs`` (the case's lung mask or the lung-field model's): written once as
    ``<stem>_lungs.png`` (``<stem>_lungs-predicted.png`` when predicted; 0/255), stored in
    every ``.npz`` as ``lungs``, and outlined on every overlay (dashed when predicted).
    """
    params = params or {}
    # unknown names and wrong settings fail up front, before any map is computed
    explainers = [get_explainer(name, **params.get(name, {})) for name in methods]
    for explainer in explainers:
        explainer.check(bundle)
    out_dir.mkdir(parents=True, exist_ok=True)
    lung_mask = lungs.to_mask(image.shape) if lungs is not None else None
    if lungs is not None and lung_mask is not None:
        suffix = "lungs-predicted" if lungs.predicted else "lungs"
        cv2.imwrite(str(out_dir / f"{_safe(stem)}_{suffix}.png"), lung_mask.astype(np.uint8) * 255)
    written = []
    for explainer in tqdm(explainers, desc="explaining", unit="method"):
        if cache is not None:
            heatmaps = cache.explain(explainer, bundle, image, target=target, seed=seed)
        else:
            heatmaps = explainer.explain(bundle, image, target=target, seed=seed)
        for heatmap in heatmaps:
            # Suffixes appended, never substituted: stems hold dots (a DICOM named by its
            # UID, a variant such as gradcam(layer=blocks.6)), and Path.with_suffix cut
            # the name at the last one, so every method's map went to the same file.
            name = f"{_safe(stem)}_{_safe(heatmap.method)}_{_safe(heatmap.target_label)}"
            npz, png = out_dir / f"{name}.npz", out_dir / f"{name}.png"
            arrays = {"values": heatmap.numpy()}
            if heatmap.segments is not None:
                arrays["segments"] = heatmap.segments.cpu().numpy().astype(np.int32)
            if lung_mask is not None:
                arrays["lungs"] = lung_mask
            with open(npz, "wb") as handle:  # savez would append .npz to a name without it
                np.savez_compressed(handle, **arrays)
            picture = overlay(image, heatmap.numpy())
            if lungs is not None:
                picture = draw_annotations(picture, [lungs], halo=True)
            cv2.imwrite(str(png), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
            written.append((heatmap, npz, png))
    return written
