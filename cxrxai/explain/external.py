"""Heatmaps computed elsewhere (another framework, another paper), scored like the
project's own (``evaluate --heatmaps PATH --method-name NAME``).

A folder of maps named by case and label, either ``<label>/<image stem>.<ext>`` or
``<image stem>_<label>.<ext>``, where ``<ext>`` is

- ``.npy`` / ``.npz`` (a 2-D float array; in an ``.npz`` the array ``map``, ``values`` or
  its only array), read with ``allow_pickle=False``;
- ``.png``: 8- or 16-bit gray, scaled to [0, 1];
- ``.pkl``: CheXlocalize's map files (``<cxr_id>_<pathology>_map.pkl``, a dict whose
  ``map`` is a torch tensor), read through a restricted unpickler that admits only the
  types that format holds; anything else is refused before it is built.

Maps are resized to the image as CheXlocalize does (bilinear, ``align_corners=False``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import Heatmap

SUFFIXES = (".npy", ".npz", ".png", ".pkl")
MAX_MAP_BYTES = 64 << 20  # a map file is at most a float32 4096 x 4096 array
MAX_MAP_SIDE = 4096

# What a CheXlocalize map file needs to be rebuilt: its dict, torch tensors and their
# storages (torch saves storages as bytes that torch.load reads with weights_only=True),
# NumPy arrays and scalars. Nothing that runs code of its choosing.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch.storage", "_load_from_bytes"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "float32"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"'{module}.{name}' is not a type a CheXlocalize map file holds"
            )
        return super().find_class(module, name)


def load_chexlocalize_pickle(path: Path) -> np.ndarray:
    """The ``map`` of a CheXlocalize map file, without running any code it names."""
    try:
        with open(path, "rb") as handle:
            data = _RestrictedUnpickler(io.BytesIO(handle.read())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise CxrxaiError(f"'{path.name}' is not a CheXlocalize map file: {exc}") from exc
    if not isinstance(data, dict) or "map" not in data:
        raise CxrxaiError(f"'{path.name}' holds no 'map' (a CheXlocalize map file holds one).")
    return _as_map(data["map"], path)


def _as_map(value: Any, path: Path) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    array = np.asarray(array)
    array = array.reshape(array.shape[-2:]) if array.ndim > 2 and array.size else array
    if array.ndim != 2 or not 1 <= min(array.shape) <= max(array.shape) <= MAX_MAP_SIDE:
        raise CxrxaiError(f"'{path.name}': a map is a 2-D array, got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number):
        raise CxrxaiError(f"'{path.name}': a map holds numbers, got {array.dtype}.")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise CxrxaiError(f"'{path.name}': the map holds NaN or infinite values.")
    return array


def read_map(path: Path) -> np.ndarray:
    """One map file as float32 (H, W)."""
    if path.stat().st_size > MAX_MAP_BYTES:
        raise CxrxaiError(f"'{path.name}' is {path.stat().st_size:,} bytes; a map is smaller.")
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        return load_chexlocalize_pickle(path)
    if suffix == ".png":
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels is None or pixels.ndim != 2:
            raise CxrxaiError(f"'{path.name}' is not a gray PNG map.")
        top = 65535.0 if pixels.dtype == np.uint16 else 255.0
        return _as_map(pixels.astype(np.float32) / top, path)
    try:
        if suffix == ".npy":  # the header's shape first: no allocation for a lie
            with open(path, "rb") as handle:
                _check_declared(np.lib.format.read_magic(handle), handle, path)
            return _as_map(np.load(path, allow_pickle=False), path)
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            name = next((n for n in ("map", "values") if n in names), None)
            if name is None and len(names) == 1:
                name = names[0]
            if name is None:
                raise CxrxaiError(f"'{path.name}' holds {names}; name the map 'map'.")
            with data.zip.open(f"{name}.npy") as member:  # compressed: check before inflating
                _check_declared(np.lib.format.read_magic(member), member, path)
            return _as_map(data[name], path)
    except (ValueError, OSError, KeyError) as exc:
        raise CxrxaiError(f"'{path.name}' could not be read as a NumPy map: {exc}") from exc


def _check_declared(version: tuple[int, int], handle: Any, path: Path) -> None:
    """Refuse an array whose header declares more than a map's size, before reading it."""
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise CxrxaiError(f"'{path.name}': .npy format {version} is not read here (1.0, 2.0).")
    shape, _, _ = readers[version](handle)
    if len(shape) > 4 or int(np.prod(shape, dtype=np.int64)) > MAX_MAP_SIDE * MAX_MAP_SIDE:
        raise CxrxaiError(f"'{path.name}' declares an array of shape {shape}: not a map.")


def resize_like_chexlocalize(values: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear, ``align_corners=False``: CheXlocalize's ``cam_to_segmentation`` resize."""
    tensor = torch.from_numpy(values)[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0]


class ExternalMaps:
    """Maps in a folder, found by a case's image stem (or CheXpert id) and a label."""

    def __init__(self, folder: Path | str, method_name: str) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CxrxaiError(f"Heatmap folder '{self.folder}' not found.")
        if not method_name or not method_name.replace("-", "").replace("_", "").isalnum():
            raise CxrxaiError(
                f"--method-name '{method_name[:40]}': letters, digits, '-' and '_' only."
            )
        self.name = method_name

    def path(self, stems: list[str], label: str) -> Path | None:
        for stem in stems:
            for suffix in SUFFIXES:
                for candidate in (
                    self.folder / label / f"{stem}{suffix}",
                    self.folder / f"{stem}_{label}{suffix}",
                    self.folder / f"{stem}_{label}_map{suffix}",  # CheXlocalize's naming
                ):
                    if candidate.is_file():
                        return candidate
        return None

    def heatmap(
        self, stems: list[str], label: str, index: int, shape: tuple[int, int]
    ) -> Heatmap | None:
        """The map for a case (its name candidates) and label at the image's size, or None
        when the folder has none."""
        path = self.path(stems, label)
        if path is None:
            return None
        values = resize_like_chexlocalize(read_map(path), shape)
        return Heatmap(values, self.name, index, label, {"source": str(path.name)})
