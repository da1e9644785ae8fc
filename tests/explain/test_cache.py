"""Heatmap disk cache: hits, keys, corrupt entries, concurrent writers."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import stat
import time
import zipfile

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer
from cxrxai.explain.base import Heatmap
from cxrxai.explain.cache import HeatmapCache, image_hash


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(size=32), device="cpu")


@pytest.fixture()
def image():
    return np.random.default_rng(0).random((40, 36), dtype=np.float32)


class CountingGradCam:
    """Wraps an explainer and counts real computations."""

    def __init__(self, **params):
        self.inner = get_explainer("gradcam", **params)
        self.name, self.params, self.stochastic = "gradcam", self.inner.params, False
        self.calls = 0

    def explain(self, *args, **kwargs):
        self.calls += 1
        return self.inner.explain(*args, **kwargs)


def test_second_open_is_a_hit(tmp_path, bundle, image):
    cache, explainer = HeatmapCache(tmp_path), CountingGradCam()
    (first,) = cache.explain(explainer, bundle, image, target=1)
    (again,) = cache.explain(explainer, bundle, image, target=1)
    assert explainer.calls == 1
    torch.testing.assert_close(first.values, again.values)
    assert again.method == "gradcam" and again.target_label == "b"


def test_key_changes_with_params_target_and_image(tmp_path, bundle, image):
    cache = HeatmapCache(tmp_path)
    base = cache.key(bundle, "img", "gradcam", {"layer": None}, 0, None)
    assert base != cache.key(bundle, "img", "gradcam", {"layer": "layer2"}, 0, None)
    assert base != cache.key(bundle, "img", "gradcam", {"layer": None}, 1, None)
    assert base != cache.key(bundle, "other", "gradcam", {"layer": None}, 0, None)
    assert base != cache.key(bundle, "img", "gradcam++", {"layer": None}, 0, None)


def test_corrupt_entry_is_recomputed(tmp_path, bundle, image):
    cache, explainer = HeatmapCache(tmp_path), CountingGradCam()
    cache.explain(explainer, bundle, image, target=0)
    (entry,) = list(tmp_path.rglob("*.npz"))
    entry.write_bytes(b"not a zip file")
    (heatmap,) = cache.explain(explainer, bundle, image, target=0)
    assert explainer.calls == 2 and heatmap.shape == image.shape
    assert cache.get(cache.path(entry.stem).stem, torch.device("cpu")) is not None


def _writer(directory: str, key: str, seed: int) -> None:
    values = torch.full((64, 64), float(seed))
    heatmap = Heatmap(values, "gradcam", 0, "a", {}, None, 0.1)
    cache = HeatmapCache(directory)
    for _ in range(20):
        cache.put(key, heatmap)


def test_concurrent_writers_leave_a_readable_entry(tmp_path):
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_writer, args=(str(tmp_path), "ab" * 32, i)) for i in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    heatmap = HeatmapCache(tmp_path).get("ab" * 32, torch.device("cpu"))
    assert heatmap is not None and heatmap.values.unique().numel() == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_precision_is_part_of_the_key(tmp_path, tiny_checkpoint):
    import copy

    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.explain.cache import HeatmapCache

    bundle = load_checkpoint(tiny_checkpoint(), device="cpu")
    fast = copy.copy(bundle)
    fast.precision = "bf16"
    compiled = copy.copy(bundle)
    compiled.compile = True
    cache = HeatmapCache(tmp_path)
    keys = {cache.key(b, "img", "shap", {}, 0, None) for b in (bundle, fast, compiled)}
    assert len(keys) == 3


def _npz(path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _declared_only(path, shape) -> None:
    """An .npz whose values.npy header declares ``shape`` and holds no data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("values.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:])
        archive.writestr("meta.npy", b"")


def _meta(key: str, **changes) -> np.ndarray:
    meta = {"key": key, "method": "gradcam", "target_index": 0, "target_label": "a"}
    meta |= {"params": {}, "seed": None, "seconds": 0.1} | changes
    return np.array(json.dumps(meta))


HOSTILE_ENTRIES = {
    "meta {}": lambda p, k: _npz(p, values=np.zeros((40, 36), np.float32), meta=np.array("{}")),
    "meta a list": lambda p, k: _npz(
        p, values=np.zeros((40, 36), np.float32), meta=np.array("[1]")
    ),
    "another key's entry": lambda p, k: _npz(
        p, values=np.zeros((40, 36), np.float32), meta=_meta("ff" * 32)
    ),
    "declares 30000 x 30000": lambda p, k: _declared_only(p, (30000, 30000)),
    "another image's shape": lambda p, k: _npz(
        p, values=np.zeros((41, 36), np.float32), meta=_meta(k)
    ),
    "NaN values": lambda p, k: _npz(p, values=np.full((40, 36), np.nan, np.float32), meta=_meta(k)),
    "integer values": lambda p, k: _npz(p, values=np.zeros((40, 36), np.int64), meta=_meta(k)),
    "3-D values": lambda p, k: _npz(p, values=np.zeros((40, 36, 3), np.float32), meta=_meta(k)),
    "segments of another shape": lambda p, k: _npz(
        p, values=np.zeros((40, 36), np.float32), meta=_meta(k), segments=np.zeros((2, 2), np.int32)
    ),
    "seed not a number": lambda p, k: _npz(
        p, values=np.zeros((40, 36), np.float32), meta=_meta(k, seed="x")
    ),
    "huge metadata": lambda p, k: _npz(
        p, values=np.zeros((40, 36), np.float32), meta=np.array("x" * 100_000)
    ),
    "pickled object": lambda p, k: np.savez(
        open(p, "wb"), values=np.array([object()], dtype=object), meta=_meta(k)
    ),
    "not a zip": lambda p, k: p.write_bytes(b"PK\x03\x04 not really"),
    "empty file": lambda p, k: p.write_bytes(b""),
}


@pytest.mark.parametrize("name", list(HOSTILE_ENTRIES))
def test_a_hostile_entry_is_deleted_and_recomputed(tmp_path, bundle, image, name):
    """A planted or damaged entry is never shown or crashed on: it is deleted and the map
    computed (the same map a clean cache gives)."""
    cache, explainer = HeatmapCache(tmp_path), CountingGradCam()
    key = cache.key(bundle, image_hash(image), "gradcam", explainer.params, 0, None)
    cache.path(key).parent.mkdir(parents=True, exist_ok=True)
    HOSTILE_ENTRIES[name](cache.path(key), key)
    (heatmap,) = cache.explain(explainer, bundle, image, target=0)
    assert explainer.calls == 1 and heatmap.shape == image.shape
    (clean,) = HeatmapCache(tmp_path / "clean").explain(CountingGradCam(), bundle, image, 0)
    torch.testing.assert_close(heatmap.values, clean.values)
    assert cache.get(key, torch.device("cpu"), image.shape) is not None  # replaced


def test_leftovers_of_killed_writers_are_swept_and_the_folder_is_private(tmp_path):
    root = tmp_path / "cache"
    (root / "ab").mkdir(parents=True)
    old = time.time() - 3600
    for i in range(30):  # what 30 SIGKILLed writers leave
        leftover = root / "ab" / f"tmp{i}.tmp"
        leftover.write_bytes(b"half an entry")
        os.utime(leftover, (old, old))
    fresh = root / "ab" / "writing-now.tmp"
    fresh.write_bytes(b"a live writer's file")
    HeatmapCache(root)
    assert [p.name for p in root.rglob("*.tmp")] == ["writing-now.tmp"]
    new_root = tmp_path / "new-cache"
    HeatmapCache(new_root)
    assert stat.S_IMODE(new_root.stat().st_mode) == 0o700
