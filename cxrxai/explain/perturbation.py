"""Model-agnostic perturbation methods: LIME (``lime``) and SHAP (``shap``).

Their floor is the model evaluations, so every evaluation goes through
:func:`batched_probabilities` in large batches on the model's device.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator

import numpy as np
import sklearn.metrics
import torch
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm

from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import BATCH_SIZE, N_SEGMENTS, Explainer, Setting
from cxrxai.explain.superpixels import quickshift
from cxrxai.runner import ModelBundle, batched_probabilities, default_batch_size, input_image01
from cxrxai.thirdparty.shap_masker import fresh_copy

SEGMENTERS = ("quickshift", "slic")
# shap's image masker: a blur kernel, or OpenCV inpainting (shap.maskers.Image).
MASKER_SPEC = re.compile(r"blur\(\d+,\d+\)|inpaint_telea|inpaint_ns")


def segmenter(kind: str, n_segments: int = 50) -> Callable[[np.ndarray], np.ndarray]:
    """LIME's superpixels: quickshift with lime's defaults, or SLIC (lime's wrapper).

    Quickshift gives scikit-image's labels, computed on every core
    (:mod:`cxrxai.explain.superpixels`). It takes no seed, as in lime: lime passes a
    ``random_seed`` that scikit-image >= 0.25 calls ``rng`` and drops it, so
    scikit-image's default (42) breaks the ties. SLIC is deterministic.
    """
    if kind == "quickshift":
        return functools.partial(quickshift, kernel_size=4, max_dist=200, ratio=0.2)
    if kind == "slic":
        return SegmentationAlgorithm(
            "slic", n_segments=n_segments, compactness=10, sigma=1, start_label=0
        )
    raise CxrxaiError(f"Unknown segmentation '{kind}'; choose one of {list(SEGMENTERS)}")


class _BatchedLime(lime_image.LimeImageExplainer):
    """lime's image explainer with its per-sample and per-segment loops vectorised.

    lime builds each perturbed image in a Python loop on the CPU (a deep copy and one
    mask per switched-off superpixel, per sample); here the same random on/off matrix,
    drawn from lime's own random state in the same order, is expanded for a whole batch
    at once on the model's device. The random matrix, the distances and the surrogate
    fit (``lime_base``) stay lime's.
    """

    def __init__(
        self,
        predict: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
        batch_size: int,
        random_state: int,
    ) -> None:
        super().__init__(kernel_width=0.25, random_state=random_state)
        self.predict, self.device, self.batch_size = predict, device, batch_size

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        n_features = np.unique(segments).shape[0]
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape(
            (num_samples, n_features)
        )
        data[0, :] = 1
        original = torch.from_numpy(image[:, :, 0]).float().to(self.device)
        fudged = torch.from_numpy(fudged_image[:, :, 0]).float().to(self.device)
        segment_ids = torch.from_numpy(segments).long().to(self.device)
        rows = torch.from_numpy(data).bool().to(self.device)
        labels = []
        for start in range(0, num_samples, self.batch_size):
            keep = rows[start : start + self.batch_size][:, segment_ids]  # (B, h, w)
            labels.append(self.predict(torch.where(keep, original, fudged)))
        # one copy to the host at the end: on a GPU, a copy per batch would wait for each
        # batch before the next one is queued
        return data, torch.cat(labels).cpu().numpy()

    def explain_gray(
        self, rgb: np.ndarray, segments: np.ndarray, label: int, num_samples: int
    ) -> lime_image.ImageExplanation:
        """``explain_instance(rgb, labels=(label,), hide_color=None, top_labels=None)``
        for a grey image repeated to (h, w, 3), in 0-255, and its superpixels: the same
        calls in the same order, but the "off" image (each superpixel at its mean) from
        one bincount instead of lime's three boolean masks per superpixel."""
        flat = segments.ravel()
        means = np.bincount(flat, weights=rgb[:, :, 0].ravel()) / np.bincount(flat).clip(min=1)
        fudged = np.repeat(means[segments][:, :, None], 3, axis=2)
        data, labels = self.data_labels(rgb, fudged, segments, None, num_samples)
        distances = sklearn.metrics.pairwise_distances(
            data, data[0].reshape(1, -1), metric="cosine"
        ).ravel()
        explanation = lime_image.ImageExplanation(rgb, segments)
        (
            explanation.intercept[label],
            explanation.local_exp[label],
            explanation.score,
            explanation.local_pred,
        ) = self.base.explain_instance_with_data(
            data, labels, distances, label, 100000, feature_selection=self.feature_selection
        )
        return explanation


class LimeExplainer(Explainer):
    name = "lime"
    description = "LIME: sparse linear surrogate over superpixels (lime package)"
    needs_gradients = False
    stochastic = True
    slow_on_cpu = True
    settings = (
        Setting("n_samples", int, 1000, "perturbed images LIME evaluates", minimum=10),
        Setting("segmentation", str, "quickshift", "superpixel algorithm", choices=SEGMENTERS),
        N_SEGMENTS,
        BATCH_SIZE,
    )

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        batch_size = self.batch_size or default_batch_size(bundle)
        # Segment in 0-255 units: lime's quickshift defaults (max_dist=200) assume them.
        image255 = (input_image01(bundle, batch) * 255.0).cpu().numpy().astype(np.float64)

        def predict(images255: torch.Tensor) -> torch.Tensor:
            return batched_probabilities(bundle, images255 / 255.0, batch_size)

        explainer = _BatchedLime(predict, bundle.device, batch_size, random_state=seed)
        rgb = np.repeat(image255[:, :, None], 3, axis=2)
        superpixels = segmenter(self.segmentation, self.n_segments)(rgb)
        explanation = explainer.explain_gray(rgb, superpixels, index, self.n_samples)
        segments = torch.from_numpy(explanation.segments).long().to(bundle.device)
        # filled on the host and sent once: an element write per superpixel into a GPU
        # tensor is a copy each
        weights = np.zeros(int(explanation.segments.max()) + 1, dtype=np.float32)
        for segment, weight in explanation.local_exp[index]:
            weights[segment] = weight
        self.segments = segments
        return torch.from_numpy(weights).to(bundle.device)[segments]


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """shap samples (KernelExplainer) and breaks ties (Partition) with NumPy's global RNG:
    seed it, then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@functools.lru_cache(maxsize=1)
def _mask_passing_image() -> type:  # -> type[shap.maskers.Image]
    """``shap.maskers.Image`` that hands the model each mask instead of a masked image.

    shap builds every masked image in NumPy, one per evaluation: a copy of the image, a
    boolean scatter, and a new ``cv2.blur`` of the whole image each time (its blur cache
    is keyed by the ``id`` of a fresh ``ravel()`` view, so it misses). With this masker
    the explainer blurs once, with shap's own code, and composes the images on the
    model's device - the image where the mask keeps it, the blur elsewhere: the values
    shap's masker writes.
    """
    import shap

    class MaskPassingImage(shap.maskers.Image):
        def __call__(self, mask: np.ndarray | None, x: np.ndarray) -> tuple[np.ndarray]:
            if mask is None:
                mask = np.zeros(np.size(x), dtype=bool)
            return (np.array(mask, dtype=bool).reshape(1, *np.shape(x)),)

        def blurred(self, x: np.ndarray) -> np.ndarray:
            """The image with every pixel masked, by ``shap.maskers.Image`` itself."""
            (out,) = shap.maskers.Image.__call__(self, np.zeros(np.size(x), dtype=bool), x)
            return out[0]

    return MaskPassingImage


@functools.lru_cache(maxsize=8)
def _image_masker_template(spec: str, shape: tuple[int, ...]):  # -> shap.maskers.Image
    import shap

    if spec.startswith("blur("):
        return _mask_passing_image()(spec, shape)
    return shap.maskers.Image(spec, shape)


def image_masker(spec: str, shape: tuple[int, ...]):  # -> shap.maskers.Image
    """A fresh image masker sharing a cached partition tree: for blur, one that passes
    masks to the model (:func:`_mask_passing_image`); otherwise shap's own.

    Building the tree is most of the masker's cost (docs/benchmarks.md). A shallow
    copy per call keeps the blur cache private: shap keys it by ``id(x)``, which a new
    image can reuse.
    """
    return fresh_copy(_image_masker_template(spec, shape))


class ShapPartitionExplainer(Explainer):
    name = "shap"
    description = "SHAP Partition explainer with an image masker (blur or inpaint)"
    needs_gradients = False
    slow_on_cpu = True
    settings = (
        Setting(
            "n_samples", int, 500, "model evaluations of SHAP's Partition explainer (at most)",
            minimum=10,
        ),
        Setting(
            "masker", str, "blur(16,16)",
            "what a hidden region becomes: blur(k,k) or OpenCV inpainting",
            suggestions=("blur(16,16)", "blur(32,32)", "blur(8,8)", "inpaint_telea", "inpaint_ns"),
            pattern=MASKER_SPEC,
        ),
        BATCH_SIZE,
    )  # fmt: skip

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        import shap

        batch_size = self.batch_size or default_batch_size(bundle)
        image = input_image01(bundle, batch).cpu().numpy()[:, :, None].astype(np.float32)

        masker = image_masker(self.masker, image.shape)
        if isinstance(masker, _mask_passing_image()):
            kept = torch.from_numpy(image[:, :, 0]).to(bundle.device)
            fill = torch.from_numpy(masker.blurred(image)[:, :, 0]).to(bundle.device)

            def compose(masks: np.ndarray) -> torch.Tensor:
                keep = torch.from_numpy(masks[..., 0]).to(bundle.device)
                return torch.where(keep, kept, fill)
        else:

            def compose(images: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(images[..., 0])).float()

        def predict(inputs: np.ndarray) -> np.ndarray:
            probabilities = batched_probabilities(bundle, compose(inputs), batch_size)
            return probabilities[:, index : index + 1].cpu().numpy()

        explainer = shap.Explainer(predict, masker, algorithm="partition")
        # shap breaks ties in its queue with NumPy's global RNG: a fixed seed keeps the map
        # the same whatever ran before, and the caller's random stream untouched.
        with numpy_seed(0):
            values = explainer(
                image[None], max_evals=self.n_samples, batch_size=batch_size, silent=True
            ).values
        return torch.from_numpy(np.asarray(values)[0, :, :, 0, 0]).float().to(bundle.device)


class KernelShapExplainer(Explainer):
    name = "kernel-shap"
    description = "KernelSHAP over SLIC superpixels, segments off = their mean (SHAMSUL)"
    needs_gradients = False
    stochastic = True
    settings = (
        Setting("n_samples", int, 500, "coalitions KernelSHAP evaluates", minimum=10),
        N_SEGMENTS,
        BATCH_SIZE,
    )

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        import shap

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        batch_size = self.batch_size or default_batch_size(bundle)
        image01 = input_image01(bundle, batch)
        rgb = np.repeat(image01.cpu().numpy()[:, :, None], 3, axis=2).astype(np.float64)
        segments = (
            torch.from_numpy(segmenter("slic", self.n_segments)(rgb)).long().to(bundle.device)
        )
        n_features = int(segments.max()) + 1
        flat = segments.flatten()
        sums = torch.bincount(flat, weights=image01.flatten(), minlength=n_features)
        means = sums / torch.bincount(flat, minlength=n_features).clamp(min=1)
        off_image = means[segments]

        def predict(switches: np.ndarray) -> np.ndarray:
            keep = torch.from_numpy(switches).bool().to(bundle.device)[:, segments]
            images = torch.where(keep, image01, off_image)
            return batched_probabilities(bundle, images, batch_size)[:, index].cpu().numpy()

        with numpy_seed(seed):
            explainer = shap.KernelExplainer(predict, np.zeros((1, n_features)))
            values = explainer.shap_values(
                np.ones((1, n_features)), nsamples=self.n_samples, silent=True
            )
        weights = torch.from_numpy(np.asarray(values).reshape(-1)[:n_features]).float()
        self.segments = segments
        return weights.to(bundle.device)[segments]


PERTURBATION_EXPLAINERS: tuple[type[Explainer], ...] = (
    LimeExplainer,
    ShapPartitionExplainer,
    KernelShapExplainer,
)
