"""LIME, SHAP Partition and KernelSHAP: shape, reproducibility, and agreement with the
reference implementations on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lime import lime_image

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer
from cxrxai.explain.perturbation import _BatchedLime, segmenter
from cxrxai.runner import batched_probabilities, input_image01

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(size=48), device=DEVICE)


@pytest.fixture(scope="module")
def image():
    """A smooth synthetic 'X-ray': two dark lung-like ellipses on a bright background."""
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    lungs = ((xx - 0.3) ** 2 / 0.02 + (yy - 0.5) ** 2 / 0.1 < 1) | (
        (xx - 0.7) ** 2 / 0.02 + (yy - 0.5) ** 2 / 0.1 < 1
    )
    return np.where(lungs, 0.25, 0.8).astype(np.float32)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("lime", {"n_samples": 60}),
        ("lime", {"n_samples": 60, "segmentation": "slic"}),
        ("shap", {"n_samples": 60}),
        ("shap", {"n_samples": 60, "masker": "inpaint_telea"}),
        ("kernel-shap", {"n_samples": 60, "n_segments": 12}),
    ],
)
def test_shape_and_seed_reproducibility(bundle, image, method, params):
    explainer = get_explainer(method, **params)
    (first,) = explainer.explain(bundle, image, target="b", seed=7)
    (again,) = explainer.explain(bundle, image, target="b", seed=7)
    assert first.shape == image.shape and first.values.device.type == DEVICE
    torch.testing.assert_close(first.values, again.values)
    if method != "shap":
        assert first.segments is not None and first.segments.shape == image.shape
        # the map is constant on each superpixel
        for segment in first.segments.unique()[:5]:
            assert first.values[first.segments == segment].unique().numel() == 1


def test_batched_lime_draws_the_same_samples_as_lime(bundle, image):
    """Our vectorised data_labels gives exactly lime's perturbation matrix and labels."""
    image255 = np.repeat((image * 255.0).astype(np.float64)[:, :, None], 3, axis=2)
    segments = segmenter("slic", 10)(image255)
    fudged = image255.copy()
    fudged[:] = 0.0

    def predict_torch(images255: torch.Tensor) -> torch.Tensor:
        return batched_probabilities(bundle, images255 / 255.0, 8)

    def predict_numpy(images: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(images[..., 0]).float().to(bundle.device)
        return predict_torch(tensor).cpu().numpy()

    ours = _BatchedLime(predict_torch, bundle.device, 8, random_state=5)
    reference = lime_image.LimeImageExplainer(random_state=5)
    data, labels = ours.data_labels(image255, fudged, segments, None, 40)
    ref_data, ref_labels = reference.data_labels(
        image255, fudged, segments, predict_numpy, 40, batch_size=8
    )
    np.testing.assert_array_equal(data, ref_data)
    np.testing.assert_allclose(labels, ref_labels, rtol=1e-5, atol=1e-6)


def test_kernel_shap_efficiency(bundle, image):
    """SHAP values sum to f(image) - f(all segments at their mean)."""
    explainer = get_explainer("kernel-shap", n_samples=400, n_segments=8)
    (heatmap,) = explainer.explain(bundle, image, target=1, seed=0)
    segments = heatmap.segments
    per_segment = torch.stack([heatmap.values[segments == s][0] for s in segments.unique()])
    image01 = torch.from_numpy(image).to(bundle.device)
    means = torch.stack([image01[segments == s].mean() for s in segments.unique()])
    off = means[torch.searchsorted(segments.unique(), segments)]
    probs = batched_probabilities(bundle, torch.stack([image01, off]), 2)[:, 1]
    assert float(per_segment.sum()) == pytest.approx(float(probs[0] - probs[1]), abs=1e-3)


def test_shap_maskers_blur_and_inpaint_differ(bundle, image):
    (blur,) = get_explainer("shap", n_samples=60).explain(bundle, image, target="b")
    (inpaint,) = get_explainer("shap", n_samples=60, masker="inpaint_ns").explain(
        bundle, image, target="b"
    )
    assert not torch.allclose(blur.values, inpaint.values)


def test_lime_gives_stock_limes_map(bundle, image):
    """Our LIME (parallel quickshift, superpixel means by bincount, batched samples on the
    device) against stock ``LimeImageExplainer.explain_instance`` with lime's own
    scikit-image quickshift wrapper and a plain classifier_fn, on the same seed."""
    from lime.wrappers.scikit_image import SegmentationAlgorithm

    explainer = get_explainer("lime", n_samples=80)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(3)))
    batch = bundle.preprocess(image)
    ours = explainer.attribute(bundle, batch, 1, torch.Generator().manual_seed(3))

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(images[..., 0] / 255.0).float()
        return batched_probabilities(bundle, tensor, 16).cpu().numpy()

    image255 = (input_image01(bundle, batch) * 255.0).cpu().numpy().astype(np.float64)
    stock = lime_image.LimeImageExplainer(kernel_width=0.25, random_state=seed).explain_instance(
        np.repeat(image255[:, :, None], 3, axis=2),
        classifier_fn,
        labels=(1,),
        top_labels=None,
        num_samples=80,
        segmentation_fn=SegmentationAlgorithm("quickshift", kernel_size=4, max_dist=200, ratio=0.2),
        random_seed=seed,
    )
    weights = dict(stock.local_exp[1])
    stock_map = np.vectorize(lambda s: weights.get(s, 0.0))(stock.segments)
    np.testing.assert_array_equal(explainer.segments.cpu().numpy(), stock.segments)
    np.testing.assert_allclose(ours.cpu().numpy(), stock_map, rtol=1e-4, atol=1e-6)


def test_shap_blur_masks_composed_on_the_device_give_stock_shaps_map(bundle, image):
    """The blur masker passes masks and the images are composed on the device; stock
    shap builds each masked image in NumPy. Same tree, same images: the same values."""
    import shap

    batch = bundle.preprocess(image)
    ours = get_explainer("shap", n_samples=120).attribute(bundle, batch, 1, torch.Generator())
    image01 = input_image01(bundle, batch).cpu().numpy()[:, :, None].astype(np.float32)

    def predict(images: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(np.ascontiguousarray(images[..., 0])).float()
        return batched_probabilities(bundle, tensor, 16)[:, 1:2].cpu().numpy()

    stock = shap.Explainer(predict, shap.maskers.Image("blur(16,16)", image01.shape))
    expected = stock(image01[None], max_evals=120, batch_size=16, silent=True).values
    np.testing.assert_allclose(ours.cpu().numpy(), expected[0, :, :, 0, 0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("method", "params"),
    [("shap", {"n_samples": 60}), ("kernel-shap", {"n_samples": 60, "n_segments": 12})],
)
def test_shap_leaves_the_callers_numpy_random_stream_alone(bundle, image, method, params):
    """shap draws from NumPy's global RNG (Partition: tie-breaking in its queue); a map,
    computed or not, must not change what the caller's seeded experiment draws next."""
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    get_explainer(method, **params).explain(bundle, image, target="b")
    np.testing.assert_array_equal(np.random.rand(3), expected)
