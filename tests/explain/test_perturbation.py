"""LIME, SHAP Partition and KernelSHAP: shape, reproducibility, and agreement with the
reference implementations on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lime import lime_image

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer
from cxrxai.explain.perturbation import _BatchedLime, batched_probabilities, segmenter

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
        ("lime", {"num_samples": 60}),
        ("lime", {"num_samples": 60, "segmentation": "slic"}),
        ("shap", {"max_evals": 60}),
        ("shap", {"max_evals": 60, "masker": "inpaint_telea"}),
        ("kernel-shap", {"nsamples": 60, "n_segments": 12}),
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
    segments = segmenter("slic", 0, 10)(image255)
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
    explainer = get_explainer("kernel-shap", nsamples=400, n_segments=8)
    (heatmap,) = explainer.explain(bundle, image, target=1, seed=0)
    segments = heatmap.segments
    per_segment = torch.stack([heatmap.values[segments == s][0] for s in segments.unique()])
    image01 = torch.from_numpy(image).to(bundle.device)
    means = torch.stack([image01[segments == s].mean() for s in segments.unique()])
    off = means[torch.searchsorted(segments.unique(), segments)]
    probs = batched_probabilities(bundle, torch.stack([image01, off]), 2)[:, 1]
    assert float(per_segment.sum()) == pytest.approx(float(probs[0] - probs[1]), abs=1e-3)


def test_shap_maskers_blur_and_inpaint_differ(bundle, image):
    (blur,) = get_explainer("shap", max_evals=60).explain(bundle, image, target="b")
    (inpaint,) = get_explainer("shap", max_evals=60, masker="inpaint_ns").explain(
        bundle, image, target="b"
    )
    assert not torch.allclose(blur.values, inpaint.values)
