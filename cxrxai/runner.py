"""Running a model: the one place that normalises inputs, batches, folds BatchNorm,
compiles, chooses the precision and the device, and keeps private copies of the network.
Explainers and metrics call it (:class:`ModelBundle`, :func:`batched_probabilities`);
:mod:`cxrxai.checkpoint` builds bundles from files.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from cxrxai.card import ModelCard
from cxrxai.errors import CheckpointError
from cxrxai.fold import fold_batch_norms
from cxrxai.thirdparty.torch_versions import weights_state

PRECISIONS = ("auto", "fp32", "bf16")
# Changes a private copy of a network once, for good (see ModelBundle.private_model).
Prepare = Callable[[nn.Module], object]


@dataclass
class ModelBundle:
    """A network in eval mode, its card, its device and a hash identifying its weights."""

    model: nn.Module
    card: ModelCard
    device: torch.device
    weights_sha256: str
    path: Path | None = None
    precision: str = "fp32"  # of forward-only batch evaluations (LIME, SHAP, faithfulness)
    compile: bool = False  # torch.compile those evaluations (opt-in: a one-off compile)
    fold_batch_norm: bool = True  # those evaluations on a copy with BatchNorm folded
    _compiled: tuple[nn.Module, nn.Module] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _folded: tuple[tuple[int, ...], nn.Module] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _private: dict[Prepare | None, tuple[tuple[int, ...], nn.Module]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _private_locks: dict[Prepare | None, threading.Lock] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _locks_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """HxW float images in [0, 1] -> a normalised (B, C, H', W') tensor on the device.

        The whole image is resized to the input size (no crop), so a map at input
        resolution maps back to the image by a plain resize.
        """
        batch = [images] if isinstance(images, np.ndarray) and images.ndim == 2 else images
        height, width = self.card.input_size
        resized = np.stack(
            [
                cv2.resize(
                    np.asarray(im, dtype=np.float32), (width, height), interpolation=cv2.INTER_AREA
                )
                for im in batch
            ]
        )
        tensor = torch.from_numpy(resized).to(self.device).unsqueeze(1)
        return normalise(tensor, self.card)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Probabilities (B, n_labels): softmax for multi-class, sigmoid for multi-label."""
        return self.probabilities(self.model(self.preprocess(images))).cpu().numpy()

    @contextlib.contextmanager
    def batch_inference(self) -> Iterator[None]:
        """Forward-only evaluations: inference mode, and bf16 autocast when ``precision``
        is "bf16" (maps stay equivalent: bench/bench_explain.py compares them)."""
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    yield
            else:
                yield

    def _weights_state(self) -> tuple[int, ...]:
        """Which network, and whether its tensors changed in place since (the sanity
        check re-initialises layers)."""
        return weights_state(self.model)

    @contextlib.contextmanager
    def private_model(self, prepare: Prepare | None = None) -> Iterator[nn.Module]:
        """A copy of the network for methods that change it while they run: CAM methods
        register hooks (one cuts the backward pass at the CAM layer), LRP's canonizers
        merge BatchNorm into the weights and hook every module. The dashboard shares one
        bundle between sessions' threads; on ``model`` itself a concurrent Saliency would
        see the cut backward pass, a concurrent Grad-CAM LRP's rules. One copy, reused
        while the weights stay the same; callers take turns (a map takes a fraction of a
        second).

        ``prepare`` changes a new copy once, for good, and that copy is kept for the
        callers passing the same function (LRP canonizes its copy once instead of on every
        call); each ``prepare`` has its own copy and its own turns.
        """
        with self._locks_lock:
            lock = self._private_locks.setdefault(prepare, threading.Lock())
        with lock:
            state = self._weights_state()
            kept = self._private.get(prepare)
            if kept is None or kept[0] != state:
                private = copy.deepcopy(self.model)
                if prepare is not None:
                    prepare(private)
                kept = self._private[prepare] = (state, private)
            yield kept[1]

    def inference_model(self, example: torch.Tensor) -> nn.Module:
        """The network for forward-only evaluations.

        With ``fold_batch_norm`` (the default), a copy with every BatchNorm that follows a
        convolution folded into it (:func:`cxrxai.fold.fold_batch_norms`): faster forward
        passes, the same maps to float rounding (tests; speed in docs/benchmarks.md).
        ``example``, a normalised
        batch, finds the pairs and checks the copy. The copy is rebuilt when the weights
        change in place (the sanity check re-initialises layers).
        """
        if not self.fold_batch_norm:
            return self.model
        state = self._weights_state()
        if self._folded is None or self._folded[0] != state:
            folded, _ = fold_batch_norms(self.model, example[:2])
            if folded is not self.model:
                folded = folded.to(memory_format=torch.channels_last)
            self._folded = (state, folded)
        return self._folded[1]

    def forward_batch(self, batch: torch.Tensor, full: bool) -> torch.Tensor:
        """Logits of a normalised batch, for forward-only evaluations, by
        :meth:`inference_model`.

        With ``compile``, full-size batches (``full``) run through ``torch.compile``
        (inductor, static shapes): faster passes after a one-off compile of tens of
        seconds (docs/benchmarks.md), outputs equal to float rounding. Smaller remainders run
        eagerly rather than compiling another shape. If compiling fails (no C++
        compiler, say), a warning says so and the eager model takes over.
        """
        model = self.inference_model(batch)
        if self.compile and full:
            try:
                if self._compiled is None or self._compiled[0] is not model:
                    self._compiled = (model, torch.compile(model, dynamic=False))
                return self._compiled[1](batch)
            except Exception as error:  # any compiler failure: fall back, keep working
                warnings.warn(
                    f"torch.compile failed ({type(error).__name__}: {error}); "
                    "continuing with the uncompiled model.",
                    stacklevel=2,
                )
                self.compile = False
        return model(batch)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.card.task == "multiclass":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)


def default_batch_size(bundle: ModelBundle) -> int:
    """Images per forward-only batch. Measured: on 2 CPU cores the per-image cost grows
    past batches of ~16; GPUs want more."""
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
    evaluations themselves (docs/benchmarks.md). With buckets a process plans at most
    log2(batch) + 1 shapes.
    """
    bucket = 1 << (len(chunk) - 1).bit_length()
    if bucket == len(chunk):
        return chunk
    padding = chunk[:1].expand(bucket - len(chunk), -1, -1, -1)
    return torch.cat([chunk, padding])


def input_image01(bundle: ModelBundle, batch: torch.Tensor) -> torch.Tensor:
    """Undo the card's normalisation: (1, C, h, w) normalised -> (h, w) in [0, 1]."""
    mean, std = _mean_std(bundle.card, batch.device)
    return (batch * std + mean)[0, 0]


def normalised_value(card: ModelCard, value01: float, device: torch.device) -> torch.Tensor:
    """What an intensity ``value01`` in [0, 1] becomes after the card's normalisation,
    (1, C, 1, 1): black (0) for a baseline, the [0, 1] bounds of LRP's gamma-box rule."""
    mean, std = _mean_std(card, device)
    return (value01 - mean) / std


def intensity_std(card: ModelCard, fraction: float, device: torch.device) -> torch.Tensor:
    """Noise std in normalised units, (1, C, 1, 1), for ``fraction`` of the [0, 1]
    intensity range (SmoothGrad's sigma)."""
    return fraction / _mean_std(card, device)[1]


def _mean_std(card: ModelCard, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(card.normalisation["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(card.normalisation["std"], device=device).view(1, -1, 1, 1)
    return mean, std


def normalise(batch01: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> the card's channels and normalisation."""
    if card.in_channels == 3 and batch01.shape[1] == 1:
        batch01 = batch01.expand(-1, 3, -1, -1)
    mean, std = _mean_std(card, batch01.device)
    return (batch01 - mean) / std


def resolve_precision(precision: str) -> str:
    """The precision of forward-only batch evaluations: "auto" means fp32 on every device
    (bf16 is opt-in: it moves SHAP maps)."""
    if precision not in PRECISIONS:
        raise CheckpointError(f"Unknown precision '{precision}'; use one of {list(PRECISIONS)}.")
    return "fp32" if precision == "auto" else precision
