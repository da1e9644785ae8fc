"""The fused CPU kernels against the batched torch definitions, SciPy and NumPy: selections
on awkward values, every metric on random and real masks, spacing, empty masks, NaN maps
and concurrent calls from threads."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from cxrxai.errors import CxrxaiError
from cxrxai.metrics import cpu_kernels
from cxrxai.metrics.distances import distances, distances_torch
from cxrxai.metrics.regions import top_percent
from cxrxai.metrics.registry import (
    ACCELERATED,
    METRICS,
    PIXEL_METRICS,
    MetricInputs,
    localisation_metrics,
    localisation_torch,
)


def awkward_rows() -> list[np.ndarray]:
    """Rows that defeat a sampled bracket: ties, a spike, negatives, heavy tails, a
    constant row, infinities, and rows too short to sample."""
    rng = np.random.default_rng(0)
    n = 256 * 256
    spike = np.zeros(n, np.float32)
    spike[rng.choice(n, 40, replace=False)] = rng.random(40) * 100
    infinite = rng.random(n).astype(np.float32)
    infinite[[3, 77]] = [np.inf, -np.inf]
    return [
        rng.random(n).astype(np.float32),
        np.round(rng.random(n) * 3).astype(np.float32),
        (rng.standard_normal(n) ** 3).astype(np.float32),
        -rng.random(n).astype(np.float32),
        spike,
        np.full(n, 0.25, np.float32),
        infinite,
        rng.random(1000).astype(np.float32),
        np.array([2.0], np.float32),
    ]


@pytest.mark.parametrize("row", awkward_rows(), ids=lambda r: f"n{r.size}")
def test_kth_largest_equals_sorting(row):
    n = row.size
    for k in sorted({1, 2, 37, n // 10, n // 2, n - 1, n} & set(range(1, n + 1))):
        got = cpu_kernels.kth_largest(row[None], np.array([k]))[0]
        assert got == np.sort(row)[n - k], k


def test_hit_is_the_first_maximum_like_numpy_argmax():
    """Maps with many tied maxima: both paths score the pixel np.argmax names (the first
    in row-major order, CheXlocalize's pointing game); constant maps are misses."""
    rng = np.random.default_rng(5)
    maps = np.round(rng.random((40, 24, 20)) * 2).astype(np.float32)  # ~25 % at the max
    maps[[3, 17]] = 1.0
    truth = rng.random((40, 24, 20)) < 0.3
    truth[3, 0, 0] = truth[17, 0, 0] = True
    expected = [
        0.0 if m.max() == m.min() else float(t.flat[np.argmax(m)])
        for m, t in zip(maps, truth, strict=True)
    ]
    args = torch.from_numpy(maps), torch.from_numpy(truth), torch.from_numpy(truth)
    assert localisation_metrics(*args)["hit"].tolist() == expected
    assert localisation_torch(*args)["hit"].tolist() == expected
    assert 0 < sum(expected) < 38


def test_top_percent_equals_torch_topk():
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.random((6, 64, 48)).astype(np.float32))
    maps[1] = maps[1].round(decimals=1)  # many ties with the k-th value: all are kept
    for percent in (1, 10, 50, 100):
        k = max(1, round(64 * 48 * percent / 100))
        kth = maps.flatten(1).topk(k, dim=1).values[:, -1].view(-1, 1, 1)
        assert torch.equal(top_percent(maps, percent), maps >= kth)


def random_batch(seed: int, count: int = 12, shape: tuple[int, int] = (40, 52)):
    """Maps and blobby masks, with empty masks and fully-overlapping pairs included."""
    rng = np.random.default_rng(seed)
    maps = torch.from_numpy(rng.standard_normal((count, *shape)).astype(np.float32))
    maps = torch.nn.functional.avg_pool2d(maps[:, None], 5, 1, 2)[:, 0]
    noise = torch.from_numpy(rng.random((2, count, *shape)).astype(np.float32))
    smooth = torch.nn.functional.avg_pool2d(noise, 7, 1, 3)
    regions, truth = smooth[0] > 0.52, smooth[1] > 0.53
    regions[0] = False  # empty prediction
    truth[1] = False  # empty truth
    regions[2] = truth[2]  # perfect overlap: every distance 0
    truth[3] = False
    truth[3, 5, 7] = True  # a single true pixel
    return maps, regions, truth


@pytest.mark.parametrize("empty", ["nan", "zero"])
@pytest.mark.parametrize("spacing", [None, (0.7, 0.7), (2.0, 0.5)])
@pytest.mark.parametrize("name", ACCELERATED)
def test_each_accelerated_metric_equals_its_reference(name, empty, spacing):
    """Generated from the registry: every metric the fused CPU kernel computes, against
    its reference ``compute`` (batched torch), on maps with ties, empty masks, a perfect
    overlap and a single true pixel."""
    maps, regions, truth = random_batch(seed=3)
    maps[6] = maps[6].round(decimals=1)  # tied maxima
    maps[7] = 0.25  # a constant map
    got = localisation_metrics(maps, regions, truth, empty, spacing)[name]
    inputs = MetricInputs(maps, regions, truth, empty, spacing or (1.0, 1.0))
    expected = METRICS[name].compute(inputs)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, err_msg=name)
    assert got.dtype == torch.float32 and got.shape == (len(maps),)


def test_the_kernel_columns_cover_the_accelerated_metrics():
    assert set(ACCELERATED) <= set(cpu_kernels.FIELDS) | {"iou", "dice", "precision", "recall"}
    assert set(ACCELERATED) <= set(PIXEL_METRICS)


def test_distances_equal_scipy_with_anisotropic_spacing():
    _, regions, truth = random_batch(seed=4, count=6, shape=(64, 33))
    spacing = (1.7, 0.4)
    got = distances(regions, truth, spacing)
    for i in range(len(regions)):
        pred, true = regions[i].numpy(), truth[i].numpy()
        if not (pred.any() and true.any()):
            assert all(math.isnan(v[i].item()) for v in got.values())
            continue
        pt = distance_transform_edt(~true, sampling=spacing)[pred]
        tp = distance_transform_edt(~pred, sampling=spacing)[true]
        assert got["hausdorff"][i].item() == pytest.approx(max(pt.max(), tp.max()), rel=1e-6)
        assert got["hd95"][i].item() == pytest.approx(
            max(np.percentile(pt, 95), np.percentile(tp, 95)), rel=1e-6
        )
        assert got["mean_distance"][i].item() == pytest.approx(pt.mean(), rel=1e-6)


def test_expanded_and_single_inputs():
    maps, regions, truth = random_batch(seed=5, count=6)
    one_map = maps[4 - 1]
    expanded = localisation_metrics(one_map.expand_as(regions), regions, truth)
    expected = localisation_torch(one_map.expand_as(regions), regions, truth)
    for name, values in expected.items():
        np.testing.assert_allclose(expanded[name].numpy(), values.numpy(), rtol=1e-5)
    single = localisation_metrics(maps[5 - 1], regions[5 - 1], truth[5 - 1])
    assert single["iou"].shape == (1,)
    single_d = distances(regions[3], truth[3])
    assert single_d["hausdorff"].shape == (1,)
    assert single_d["hausdorff"].item() == pytest.approx(
        distances_torch(regions[3:4], truth[3:4])["hausdorff"].item()
    )


def test_nan_map_is_reported_not_scored():
    maps, regions, truth = random_batch(seed=6, count=4)
    maps[1, 4, 4] = float("nan")
    with pytest.raises(CxrxaiError, match=r"batch index \[1\] contain NaN"):
        localisation_metrics(maps, regions, truth)
    with pytest.raises(CxrxaiError, match="NaN"):
        localisation_torch(maps, regions, truth)


def test_size_mismatch_is_a_clear_error():
    maps, regions, truth = random_batch(seed=7, count=4)
    with pytest.raises(CxrxaiError, match="differ in size"):
        localisation_metrics(maps, regions, truth[:, :-1])


def test_concurrent_calls_from_threads_agree():
    """Streamlit serves sessions from threads: calls must neither crash nor mix up."""
    maps, regions, truth = random_batch(seed=8, count=16, shape=(96, 96))
    expected = localisation_torch(maps, regions, truth)["hd95"].numpy()
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(localisation_metrics(maps, regions, truth)["hd95"].numpy())
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 20
    for result in results:
        np.testing.assert_allclose(result, expected, rtol=1e-5)


def test_real_masks_equal_torch(covid_root):
    from cxrxai.datasets.covidqu import load_covid_qu_ex

    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:8]
    truth = torch.from_numpy(np.stack([c.findings()[0].load_mask() for c in cases]))
    lungs = np.stack([c.anatomy("lungs").load_mask() for c in cases]).astype(np.float32)
    # a smooth map with real anatomy: the blurred lung mask plus a little noise
    maps = torch.nn.functional.avg_pool2d(torch.from_numpy(lungs)[:, None], 15, 1, 7)[:, 0]
    maps = maps + torch.rand(maps.shape, generator=torch.Generator().manual_seed(0)) * 1e-3
    for percent in (5, 20):
        regions = top_percent(maps, percent)
        got = localisation_metrics(maps, regions, truth)
        expected = localisation_torch(maps, regions, truth)
        for name, values in expected.items():
            np.testing.assert_allclose(
                got[name].numpy(), values.numpy(), rtol=1e-5, atol=1e-4, err_msg=name
            )


def test_warm_up_runs_every_kernel():
    cpu_kernels.warm_up()  # compiles or loads each kernel; must not raise


def test_bool_masks_stored_as_other_bytes_count_once():
    """A bool array whose True bytes are 255 (NumPy views, Pillow pictures) is counted as
    True, never as 255 pixels."""
    rng = np.random.default_rng(1)
    maps = torch.from_numpy(rng.random((2, 24, 24)).astype(np.float32))
    clean = maps > 0.6
    truth = maps > 0.3
    odd = torch.from_numpy((clean.numpy().view(np.uint8) * 255).view(np.bool_))
    assert odd.numpy().view(np.uint8).max() == 255
    expected = localisation_metrics(maps, clean, truth)
    for name, values in localisation_metrics(maps, odd, truth).items():
        assert torch.equal(values.nan_to_num(-1), expected[name].nan_to_num(-1)), name


@pytest.mark.parametrize("bytes_of_true", [1, 255])
def test_lung_and_border_shares_equal_their_references(bytes_of_true):
    """The kernel's lung and border shares against the torch references, with lung
    fields per image and shared, True stored as 1 or as 255, and maps of no positive
    relevance (NaN) among them."""
    maps, regions, truth = random_batch(seed=5)
    maps[2] = -maps[2].abs()  # no positive relevance: both shares NaN
    rng = np.random.default_rng(4)
    lungs = rng.random(maps.shape) > 0.5
    lungs = torch.from_numpy((lungs.view(np.uint8) * bytes_of_true).view(np.bool_))
    for given in (lungs, lungs[0]):  # per image, and one mask for the batch
        got = localisation_metrics(maps, regions, truth, lungs=given)
        expected = localisation_torch(maps, regions, truth, lungs=given.clone().bool())
        for name in ("lung_relevance", "border_relevance"):
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)
            assert torch.isnan(got[name][2]), name
    without = localisation_metrics(maps, regions, truth)
    assert torch.isnan(without["lung_relevance"]).all()
    assert not torch.isnan(without["border_relevance"][:2]).any()


def test_a_nan_map_is_refused_by_the_kernel_path_too():
    maps, regions, truth = random_batch(seed=6)
    maps[3, 4, 5] = float("nan")
    with pytest.raises(CxrxaiError, match=r"batch index \[3\] contain NaN"):
        localisation_metrics(maps, regions, truth)
