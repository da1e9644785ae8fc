"""Heatmap disk cache: hits, keys, corrupt entries, concurrent writers."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer
from cxrxai.explain.base import Heatmap
from cxrxai.explain.cache import HeatmapCache


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
