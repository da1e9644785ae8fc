"""A disk cache of heatmaps, so reopening a case is instant.

Key: checkpoint weights hash, image pixel hash, method, its parameters, target and seed.
Entries are ``.npz`` files written to a temporary name and renamed into place
(``os.replace`` is atomic), so two processes writing the same entry never leave a torn
file; an entry that is unreadable, damaged or not what its key asked for is deleted and
recomputed, never crashed on or shown (:meth:`HeatmapCache.get`). The folder is private
to its user; temporary files of killed writers are swept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrxai.environment import cache_dir
from cxrxai.explain.base import Explainer, Heatmap, Target, resolve_targets
from cxrxai.runner import ModelBundle

CACHE_VERSION = 2  # entries hold their own key (version 1 entries are recomputed)
TEMPORARY_SUFFIX = ".tmp"
MAX_SIDE = 20_000  # no map of an accepted image is larger (images: 5,000 px a side)
MAX_META_BYTES = 1 << 16
_SWEPT: set[Path] = set()


def _private_folder(folder: Path) -> None:
    """Create the cache folder readable by its user only (maps are derived from patient
    images); a folder that exists keeps its mode."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _array_header(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array in an .npz, from its header alone (nothing decoded)."""
    with archive.open(f"{name}.npy") as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    return shape, dtype


def _read_entry(
    path: Path, key: str, device: torch.device, shape: tuple[int, int] | None
) -> Heatmap | None:
    """A validated entry (see :meth:`HeatmapCache.get`), or None."""
    with zipfile.ZipFile(path) as archive:
        values_shape, values_dtype = _array_header(archive, "values")
        if values_dtype.kind != "f" or len(values_shape) != 2:
            return None
        if max(values_shape) > MAX_SIDE or (shape is not None and values_shape != tuple(shape)):
            return None
        meta_shape, meta_dtype = _array_header(archive, "meta")
        if meta_shape != () or meta_dtype.kind != "U" or meta_dtype.itemsize > MAX_META_BYTES:
            return None
        names = set(archive.namelist())
        if "segments.npy" in names:
            segments_shape, segments_dtype = _array_header(archive, "segments")
            if segments_shape != values_shape or segments_dtype.kind not in "iu":
                return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None  # not written for this key: planted, copied or from an old version
        values = data["values"].astype(np.float32)
        segments = data["segments"] if "segments" in data.files else None
    if not np.isfinite(values).all():
        return None
    fields = (meta["method"], meta["target_label"], meta["params"])
    if not (
        isinstance(fields[0], str) and isinstance(fields[1], str) and isinstance(fields[2], dict)
    ):
        return None
    return Heatmap(
        torch.from_numpy(values).to(device),
        meta["method"],
        int(meta["target_index"]),
        meta["target_label"],
        meta["params"],
        None if meta["seed"] is None else int(meta["seed"]),
        float(meta["seconds"]),
        None if segments is None else torch.from_numpy(segments).long().to(device),
        from_cache=True,
    )


def image_hash(image: np.ndarray) -> str:
    pixels = np.ascontiguousarray(image, dtype=np.float32)
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(pixels.tobytes())
    return digest.hexdigest()


class HeatmapCache:
    """``get`` / ``put`` heatmaps by key; ``explain`` computes only what is missing."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory else cache_dir()
        if self.directory not in _SWEPT:  # once per folder and process
            _SWEPT.add(self.directory)
            _private_folder(self.directory)
            self.sweep()

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

    def get(
        self, key: str, device: torch.device, shape: tuple[int, int] | None = None
    ) -> Heatmap | None:
        """The entry stored under ``key``, or None (then the caller recomputes it).

        Entries are files anyone with access to the folder could have written or damaged,
        so an entry is used only when it is what this key asked for: its own key inside,
        a float map of ``shape`` (the image's) within :data:`MAX_SIDE` a side read only
        after its header said so, finite values, complete metadata. Anything else is
        deleted and recomputed, never crashed on (a planted ``{}`` raised KeyError on every
        visit; a declared 30000 x 30000 array, MemoryError).
        """
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            heatmap = _read_entry(path, key, device, shape)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            heatmap = None
        if heatmap is None:
            path.unlink(missing_ok=True)
        return heatmap

    def put(self, key: str, heatmap: Heatmap) -> Path:
        path = self.path(key)
        _private_folder(path.parent)
        meta = {
            "key": key,
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
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=TEMPORARY_SUFFIX)
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez_compressed(stream, **arrays)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return path

    def sweep(self, older_than_s: float = 600.0) -> int:
        """Delete temporary files that writers killed mid-write left behind (a live
        writer's file is younger); returns how many."""
        removed = 0
        cutoff = time.time() - older_than_s
        for leftover in self.directory.glob(f"*/*{TEMPORARY_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
        return removed

    def has(
        self, explainer: Explainer, bundle: ModelBundle, image_sha: str, index: int, seed: int = 0
    ) -> bool:
        """Whether a map is stored for these (checked when read, not here)."""
        used_seed = seed if explainer.stochastic else None
        key = self.key(bundle, image_sha, explainer.name, explainer.params, index, used_seed)
        return self.path(key).is_file()

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
            heatmap = self.get(key, bundle.device, image.shape)
            if heatmap is None:
                (heatmap,) = explainer.explain(bundle, image, target=index, seed=seed)
                self.put(key, heatmap)
            heatmaps.append(heatmap)
        return heatmaps
