"""Model-agnostic perturbation methods: LIME (``lime``) and SHAP (``shap``).

Their floor is the model evaluations, so every evaluation goes through
:func:`batched_probabilities` in large batches on the model's device.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm

from cxrxai.checkpoint import ModelBundle, normalise
from cxrxai.errors import CxrxaiError
from cxrxai.explain.base import Explainer

SEGMENTERS = ("quickshift", "slic")


def default_batch_size(bundle: ModelBundle) -> int:
    # Measured: on 2 CPU cores the per-image cost grows past batches of ~16; GPUs want more.
    return 256 if bundle.device.type == "cuda" else 16


def batched_probabilities(
    bundle: ModelBundle, images01: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """(N, h, w) images in [0, 1] at the model's input size -> (N, n_labels) float32
    probabilities, in inference mode (and bf16 autocast when the bundle asks for it)."""
    outputs = []
    with bundle.batch_inference():
        for start in range(0, len(images01), batch_size):
            chunk = images01[start : start + batch_size].to(bundle.device).unsqueeze(1)
            count = len(chunk)
            if bundle.device.type == "cuda":
                chunk = _pad_to_bucket(chunk)
            inputs = normalise(chunk, bundle.card)
            logits = bundle.forward_batch(inputs, full=count == batch_size)[:count].float()
            outputs.append(bundle.probabilities(logits))
    return torch.cat(outputs)


def _pad_to_bucket(chunk: torch.Tensor) -> torch.Tensor:
    """Pad a GPU batch to the next power of two.

    cuDNN builds execution plans per input shape; SHAP's Partition explainer asks for
    batches of ever-changing sizes, and planning each new one cost more than the
    evaluations (measured on an H100: 1.1 s for 500 evaluations against 0.07 s of model
    time). With buckets a process plans at most log2(batch) + 1 shapes.
    """
    bucket = 1 << (len(chunk) - 1).bit_length()
    if bucket == len(chunk):
        return chunk
    padding = chunk[:1].expand(bucket - len(chunk), -1, -1, -1)
    return torch.cat([chunk, padding])


def input_image01(bundle: ModelBundle, batch: torch.Tensor) -> torch.Tensor:
    """Undo the card's normalisation: (1, C, h, w) normalised -> (h, w) in [0, 1]."""
    mean = torch.tensor(bundle.card.normalisation["mean"], device=batch.device).view(1, -1, 1, 1)
    std = torch.tensor(bundle.card.normalisation["std"], device=batch.device).view(1, -1, 1, 1)
    return (batch * std + mean)[0, 0]


def segmenter(kind: str, seed: int, n_segments: int = 50) -> SegmentationAlgorithm:
    """lime's wrappers around scikit-image: quickshift with lime's defaults, or SLIC."""
    if kind == "quickshift":
        return SegmentationAlgorithm(
            "quickshift", kernel_size=4, max_dist=200, ratio=0.2, random_seed=seed
        )
    if kind == "slic":
        return SegmentationAlgorithm(
            "slic", n_segments=n_segments, compactness=10, sigma=1, start_label=0
        )
    raise CxrxaiError(f"Unknown segmentation '{kind}'; choose one of {list(SEGMENTERS)}")


class _BatchedLime(lime_image.LimeImageExplainer):
    """lime's image explainer with ``data_labels`` vectorised.

    lime builds each perturbed image in a Python loop on the CPU (a deep copy and one
    mask per switched-off superpixel, per sample); here the same random on/off matrix,
    drawn from lime's own random state in the same order, is expanded for a whole batch
    at once on the model's device. Segmentation, distances and the surrogate fit
    (``lime_base``) stay lime's.
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
            labels.append(self.predict(torch.where(keep, original, fudged)).cpu())
        return data, torch.cat(labels).numpy()


class LimeExplainer(Explainer):
    name = "lime"
    description = "LIME: sparse linear surrogate over superpixels (lime package)"
    needs_gradients = False
    stochastic = True

    def __init__(
        self,
        num_samples: int = 1000,
        segmentation: str = "quickshift",
        n_segments: int = 50,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples=num_samples,
            segmentation=segmentation,
            n_segments=n_segments,
            batch_size=batch_size,
        )
        self.num_samples, self.segmentation = num_samples, segmentation
        self.n_segments, self.batch_size = n_segments, batch_size

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
        explanation = explainer.explain_instance(
            np.repeat(image255[:, :, None], 3, axis=2),
            classifier_fn=None,
            labels=(index,),
            top_labels=None,
            num_samples=self.num_samples,
            segmentation_fn=segmenter(self.segmentation, seed, self.n_segments),
            random_seed=seed,
        )
        segments = torch.from_numpy(explanation.segments).long().to(bundle.device)
        weights = torch.zeros(int(segments.max()) + 1, device=bundle.device)
        for segment, weight in explanation.local_exp[index]:
            weights[segment] = float(weight)
        self.segments = segments
        return weights[segments]


@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """shap's KernelExplainer samples from NumPy's global RNG: seed it, then restore."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@functools.lru_cache(maxsize=8)
def _image_masker_template(spec: str, shape: tuple[int, ...]):  # -> shap.maskers.Image
    import shap

    return shap.maskers.Image(spec, shape)


def image_masker(spec: str, shape: tuple[int, ...]):  # -> shap.maskers.Image
    """A fresh ``shap.maskers.Image`` sharing a cached partition tree.

    Building the tree is most of the masker's cost (measured on an H100 machine: SHAP with
    500 evaluations 1.0 s with a new masker per call, 0.49 s with one reused). A shallow
    copy per call keeps the blur cache private: shap keys it by ``id(x)``, which a new
    image can reuse.
    """
    masker = copy.copy(_image_masker_template(spec, shape))
    masker.last_xid = None
    masker._blur_value_cache = None
    return masker


class ShapPartitionExplainer(Explainer):
    name = "shap"
    description = "SHAP Partition explainer with an image masker (blur or inpaint)"
    needs_gradients = False

    def __init__(
        self, max_evals: int = 500, masker: str = "blur(16,16)", batch_size: int | None = None
    ) -> None:
        super().__init__(max_evals=max_evals, masker=masker, batch_size=batch_size)
        self.max_evals, self.masker, self.batch_size = max_evals, masker, batch_size

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        import shap

        batch_size = self.batch_size or default_batch_size(bundle)
        image = input_image01(bundle, batch).cpu().numpy()[:, :, None].astype(np.float32)

        def predict(images: np.ndarray) -> np.ndarray:
            tensor = torch.from_numpy(np.ascontiguousarray(images[..., 0])).float()
            return (
                batched_probabilities(bundle, tensor, batch_size)[:, index : index + 1]
                .cpu()
                .numpy()
            )

        masker = image_masker(self.masker, image.shape)
        explainer = shap.Explainer(predict, masker, algorithm="partition")
        values = explainer(
            image[None], max_evals=self.max_evals, batch_size=batch_size, silent=True
        ).values
        return torch.from_numpy(np.asarray(values)[0, :, :, 0, 0]).float().to(bundle.device)


class KernelShapExplainer(Explainer):
    name = "kernel-shap"
    description = "KernelSHAP over SLIC superpixels, segments off = their mean (SHAMSUL)"
    needs_gradients = False
    stochastic = True

    def __init__(
        self, nsamples: int = 500, n_segments: int = 50, batch_size: int | None = None
    ) -> None:
        super().__init__(nsamples=nsamples, n_segments=n_segments, batch_size=batch_size)
        self.nsamples, self.n_segments, self.batch_size = nsamples, n_segments, batch_size

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        import shap

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        batch_size = self.batch_size or default_batch_size(bundle)
        image01 = input_image01(bundle, batch)
        rgb = np.repeat(image01.cpu().numpy()[:, :, None], 3, axis=2).astype(np.float64)
        segments = (
            torch.from_numpy(segmenter("slic", seed, self.n_segments)(rgb)).long().to(bundle.device)
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
                np.ones((1, n_features)), nsamples=self.nsamples, silent=True
            )
        weights = torch.from_numpy(np.asarray(values).reshape(-1)[:n_features]).float()
        self.segments = segments
        return weights.to(bundle.device)[segments]


PERTURBATION_EXPLAINERS: tuple[type[Explainer], ...] = (
    LimeExplainer,
    ShapPartitionExplainer,
    KernelShapExplainer,
)
