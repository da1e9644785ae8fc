"""Checkpoints: a folder holding ``weights.safetensors`` and ``model_card.json``.

:func:`load_checkpoint` validates the card, builds the network (timm, or torchxrayvision
for their published DenseNet/ResNet weights), loads the weights strictly and returns a
:class:`ModelBundle` in eval mode on the chosen device. Every failure is a
:class:`~cxrxai.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import pickle
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from cxrxai.card import CARD_FILENAME, ModelCard, load_card
from cxrxai.errors import CheckpointError
from cxrxai.fold import fold_batch_norms
from cxrxai.settings import pick_device

WEIGHTS_FILENAME = "weights.safetensors"
# torchxrayvision scales images to [-1024, 1024]: (x - 0.5) / (1 / 2048) for x in [0, 1].
XRV_NORMALISATION = {"mean": [0.5], "std": [1.0 / 2048.0]}
XRV_ARCHITECTURES = ("densenet121", "resnet50")
PRECISIONS = ("auto", "fp32", "bf16")
# Changes a private copy of a network once, for good (see ModelBundle.private_model).
Prepare = Callable[[nn.Module], object]


def build_network(card: ModelCard) -> nn.Module:
    """An untrained network with the card's architecture, input channels and outputs."""
    if card.framework == "torchxrayvision":
        return _build_xrv_network(card)
    import timm

    if not timm.is_model(card.architecture):
        close = timm.list_models(f"*{card.architecture.split('_')[-1]}*")[:8]
        raise CheckpointError(
            f"Unknown timm architecture '{card.architecture}' in the model card. "
            f"Similar names: {close}. See timm.list_models() for all."
        )
    return timm.create_model(
        card.architecture,
        pretrained=False,
        num_classes=len(card.labels),
        in_chans=card.in_channels,
    )


def _build_xrv_network(card: ModelCard) -> nn.Module:
    import torchxrayvision as xrv

    if card.architecture == "densenet121":
        return xrv.models.DenseNet(weights=None, num_classes=len(card.labels))
    if card.architecture == "resnet50":
        # xrv's ResNet has no weights=None path with a custom head; build the torchvision
        # body it wraps directly.
        model = xrv.models.ResNet.__new__(xrv.models.ResNet)
        nn.Module.__init__(model)
        import torchvision

        model.weights = None
        model.apply_sigmoid = False
        model.model = torchvision.models.resnet50(num_classes=len(card.labels))
        model.model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        model.targets = list(card.labels)
        model.pathologies = model.targets
        model.op_threshs = None
        return model
    raise CheckpointError(
        f"Unknown torchxrayvision architecture '{card.architecture}'; use one of "
        f"{list(XRV_ARCHITECTURES)}."
    )


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


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
        """Which network, and the version counter of each of its tensors (in-place
        changes, such as the sanity check's re-initialisation, increment them)."""
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return (id(self.model), *(tensor._version for tensor in tensors))

    @contextlib.contextmanager
    def private_model(self, prepare: Prepare | None = None) -> Iterator[nn.Module]:
        """A copy of the network for methods that change it while they run: CAM methods
        register hooks (one cuts the backward pass at the CAM layer), LRP's canonizers
        merge BatchNorm into the weights and hook every module. The dashboard shares one
        bundle between sessions' threads; on ``model`` itself a concurrent Saliency would
        see the cut backward pass, a concurrent Grad-CAM LRP's rules. One copy, reused
        while the weights stay the same; callers take turns (Grad-CAM takes 0.02 s, LRP
        0.2 s on 2 CPU cores).

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
        convolution folded into it (:func:`cxrxai.fold.fold_batch_norms`): the demo model's
        forward passes 1.5x faster on 2 CPU cores, logits within 1.5e-6, LIME and SHAP
        maps within 5e-7 of the unfolded network's (Spearman 1). ``example``, a normalised
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
        (inductor, static shapes): the demo model's forward passes took 14.9 instead of
        21.1 ms per image on 2 CPU cores, outputs equal to 7e-7, after a one-off compile
        of 34 s (6 s once inductor's on-disk cache holds it). Smaller remainders run
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


def normalise(batch01: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> the card's channels and normalisation."""
    if card.in_channels == 3 and batch01.shape[1] == 1:
        batch01 = batch01.expand(-1, 3, -1, -1)
    mean = torch.tensor(card.normalisation["mean"], device=batch01.device).view(1, -1, 1, 1)
    std = torch.tensor(card.normalisation["std"], device=batch01.device).view(1, -1, 1, 1)
    return (batch01 - mean) / std


def resolve_checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """(card, weights) for a checkpoint folder, or for either file inside it."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint '{path}' not found. Pass a folder holding {CARD_FILENAME} and "
            f"{WEIGHTS_FILENAME} (for example models/demo-effnet-lite0-covidqu)."
        )
    weights = path if path.is_file() and path.name != CARD_FILENAME else folder / WEIGHTS_FILENAME
    return folder / CARD_FILENAME, weights


def read_state_dict(weights_path: Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or from a torch file holding a state dict (read with
    ``torch.load(weights_only=True)``, which builds tensors and containers only).

    A file that pickles Python objects - a whole model, as torchxrayvision publishes its
    weights - can run any code while it is read, so it is refused unless
    ``trust_pickle`` (``import-xrv --trust-pickle``, for a file the user vouches for).
    """
    if not weights_path.is_file():
        raise CheckpointError(f"Weights file '{weights_path}' not found.")
    try:
        if weights_path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(weights_path))
        obj = torch.load(weights_path, map_location="cpu", weights_only=not trust_pickle)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        objects = _pickled_objects(weights_path)
        if not objects:
            raise _unreadable(weights_path, exc) from exc
        raise CheckpointError(
            f"Weights file '{weights_path.name}' holds pickled Python objects "
            f"({', '.join(objects[:3])}: a whole model, not only its tensors); reading "
            "them can run any code, so cxrxai reads only safetensors or plain state dicts. "
            "If you trust the file, convert it once in a shell: "
            f"python -m cxrxai import-xrv '{weights_path.name}' --out "
            "models/NAME --trust-pickle (torchxrayvision models), or save its "
            "state_dict() with torch.save."
        ) from exc
    except Exception as exc:  # any decoder error means: not a weights file we can read
        raise _unreadable(weights_path, exc) from exc
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"Weights file '{weights_path}' does not hold a state dict of tensors."
        )
    return obj


def _pickled_objects(weights_path: Path) -> list[str]:
    """The Python classes and functions a torch file would import and call, listed by
    torch without running them; empty when it is not a torch file at all."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(weights_path))
    except Exception:  # not a torch.save file: nothing pickled to report
        return []


def _unreadable(weights_path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"Weights file '{weights_path}' could not be read ({type(exc).__name__}: {exc}). "
        "Expected a .safetensors file or a torch state dict."
    )


def available_checkpoints(roots: Iterable[Path]) -> list[Path]:
    """Checkpoint folders (holding a model card) that are one of ``roots`` or directly
    inside one: what the dashboard offers to load, instead of a free server path."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        for folder in candidates:
            if (folder / CARD_FILENAME).is_file() and folder.resolve() not in found:
                found.append(folder.resolve())
    return found


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable report of missing, unexpected and misshapen tensors."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or misshapen:
        parts = []
        if misshapen:
            parts.append(f"{len(misshapen)} shape mismatch(es), e.g. {misshapen[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
        raise CheckpointError(
            f"Weights in '{source}' do not fit the architecture in the model card: "
            + "; ".join(parts)
            + ". Check 'architecture', 'labels' (output count) and 'in_channels'."
        )
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    path: Path | str,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool = False,
) -> ModelBundle:
    """Load a checkpoint folder (or its card / weights file) as an eval-mode bundle.

    ``precision`` of forward-only batch evaluations: "fp32" ("auto" means fp32) or "bf16",
    opt-in: measured on an H100, bf16 LIME maps kept a Spearman correlation of 0.99 with
    fp32, but SHAP Partition maps only 0.89-0.96, below the 0.99 equivalence bar.
    ``compile``: run those evaluations through ``torch.compile`` (see
    :meth:`ModelBundle.forward_batch`).
    """
    card_path, weights_path = resolve_checkpoint_paths(Path(path))
    card = load_card(card_path)
    bundle = bundle_from_card(card, weights_path, device, precision)
    bundle.compile = compile
    return bundle


def resolve_precision(precision: str) -> str:
    """The precision of forward-only batch evaluations: "auto" means fp32 on every device
    (bf16 is opt-in: it moves SHAP maps)."""
    if precision not in PRECISIONS:
        raise CheckpointError(f"Unknown precision '{precision}'; use one of {list(PRECISIONS)}.")
    return "fp32" if precision == "auto" else precision


def bundle_from_card(
    card: ModelCard,
    weights_path: Path,
    device: str | torch.device | None = None,
    precision: str = "auto",
    trust_pickle: bool = False,
) -> ModelBundle:
    model = build_network(card)
    load_weights(model, read_state_dict(weights_path, trust_pickle), str(weights_path))
    named = dict(model.named_modules())
    if card.target_layer not in named:
        raise CheckpointError(
            f"target_layer '{card.target_layer}' of the model card is not a module of "
            f"'{card.architecture}'. Candidates near the end: {list(named)[-6:]}"
        )
    target = pick_device(str(device) if device is not None else None)
    if target.type == "cuda":
        # Real fp32 on the GPU: TF32 convolutions rounded SHAP evaluations enough to move
        # the maps (Spearman 0.81-0.87 against the same pipeline in fp32, H100).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    # Channels-last: measured 1.57x faster forward passes of the demo model on 2 CPU cores.
    model = model.to(target, memory_format=torch.channels_last).eval()
    # Explanations need gradients with respect to inputs and activations, never to the
    # weights: frozen weights skip their gradients in every backward pass.
    model.requires_grad_(False)
    return ModelBundle(
        model,
        card,
        target,
        file_sha256(weights_path),
        weights_path.parent,
        resolve_precision(precision),
    )


def save_checkpoint(model: nn.Module, card: ModelCard, folder: Path) -> Path:
    """Write ``weights.safetensors`` and ``model_card.json`` into ``folder``."""
    from safetensors.torch import save_file

    card.validate()
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILENAME))
    card.save(folder / CARD_FILENAME)
    return folder


def load_xrv_weights(
    weights_path: Path | str,
    architecture: str = "densenet121",
    labels: list[str] | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    trust_pickle: bool = False,
) -> ModelBundle:
    """A torchxrayvision model from a weights file the user already has (no download).

    ``labels`` default to torchxrayvision's 18 default pathologies (their output order);
    input is 1 channel in [-1024, 1024] at 224 px (512 px for their ResNet-50).
    ``trust_pickle``: also read a file that pickles the whole model (torchxrayvision's
    published files do; reading one can run code, see :func:`read_state_dict`).
    """
    import torchxrayvision as xrv

    if labels is None:
        labels = list(xrv.datasets.default_pathologies)
    size = 512 if architecture == "resnet50" else 224
    card = ModelCard(
        architecture=architecture,
        labels=labels,
        task="multilabel",
        input_size=(size, size),
        in_channels=1,
        normalisation=dict(XRV_NORMALISATION),
        target_layer="features.norm5" if architecture == "densenet121" else "model.layer4",
        framework="torchxrayvision",
        name=f"torchxrayvision {architecture} ({Path(weights_path).name})",
    )
    card.validate()
    return bundle_from_card(card, Path(weights_path), device, precision, trust_pickle)
