"""A disk cache of heatmaps, so reopening a case is instant.

Key: checkpoint weights hash, image pixel hash, method, its parameters, target and seed.
Entries are ``.npz`` files written to a temporary name and renamed into place
(``os.replace`` is atomic), so two processes writing the same entry never leave a torn
file; an unreadable entry is deleted and recomputed, never crashed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrxai.checkpoint import ModelBundle
from cxrxai.explain.base import Explainer, Heatmap, Target, resolve_targets
from cxrxai.settings import cache_dir

CACHE_VERSION = 1


def image_hash(image: np.ndarray) -> str:
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


class HeatmapCache:
    """``get`` / ``put`` heatmaps by key; ``explain`` computes only what is missing."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory else cache_dir()

    def key(
        self,
        bundle: ModelBundle,
        image_sha: str,
        method: str,
        params: dict[str, Any],
        target_index: int,
        seed: int | None,
    ) -> str:
        fields = {
            "v": CACHE_VERSION,
            "weights": bundle.weights_sha256,
            "image": image_sha,
            "method": method,
            "params": params,
            "target": target_index,
            "seed": seed,
        }
        if bundle.precision != "fp32":  # bf16 maps differ (SHAP): never served as fp32
            fields["precision"] = bundle.precision
        if bundle.compile:  # compiled kernels round differently; SHAP Partition notices
            fields["compiled"] = True
        description = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(description.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def get(self, key: str, device: torch.device) -> Heatmap | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                values = torch.from_numpy(data["values"].astype(np.float32)).to(device)
                segments = (
                    torch.from_numpy(data["segments"]).long().to(device)
                    if "segments" in data.files
                    else None
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            path.unlink(missing_ok=True)  # corrupt or torn: drop it, the caller recomputes
            return None
        return Heatmap(
            values,
            meta["method"],
            meta["target_index"],
            meta["target_label"],
            meta["params"],
            meta["seed"],
            meta["seconds"],
            segments,
        )

    def put(self, key: str, heatmap: Heatmap) -> Path:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "method": heatmap.method,
            "target_index": heatmap.target_index,
            "target_label": heatmap.target_label,
            "params": heatmap.params,
            "seed": heatmap.seed,
            "seconds": heatmap.seconds,
        }
        arrays: dict[str, np.ndarray] = {
            "values": heatmap.numpy(),
            "meta": np.array(json.dumps(meta, default=str)),
        }
        if heatmap.segments is not None:
            arrays["segments"] = heatmap.segments.cpu().numpy().astype(np.int32)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, **arrays)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path

    def explain(
        self,
        explainer: Explainer,
        bundle: ModelBundle,
        image: np.ndarray,
        target: Target = None,
        seed: int = 0,
    ) -> list[Heatmap]:
        """Cached heatmaps for every resolved target; computes and stores the missing."""
        sha = image_hash(image)
        used_seed = seed if explainer.stochastic else None
        heatmaps = []
        for index in resolve_targets(bundle, image, target):
            key = self.key(bundle, sha, explainer.name, explainer.params, index, used_seed)
            heatmap = self.get(key, bundle.device)
            if heatmap is None:
                (heatmap,) = explainer.explain(bundle, image, target=index, seed=seed)
                self.put(key, heatmap)
            heatmaps.append(heatmap)
        return heatmaps
