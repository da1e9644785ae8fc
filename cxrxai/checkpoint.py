"""Checkpoints: a folder holding ``weights.safetensors`` and ``model_card.json``.

:func:`load_checkpoint` validates the card, builds the network (timm, or torchxrayvision
for their published DenseNet/ResNet weights), loads the weights strictly and returns a
:class:`~cxrxai.runner.ModelBundle` (which runs it) in eval mode on the chosen device.
Every failure is a :class:`~cxrxai.errors.CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from cxrxai.card import CARD_FILENAME, ModelCard, load_card
from cxrxai.environment import pick_device
from cxrxai.errors import CheckpointError
from cxrxai.runner import ModelBundle, resolve_precision

WEIGHTS_FILENAME = "weights.safetensors"
# torchxrayvision scales images to [-1024, 1024]: (x - 0.5) / (1 / 2048) for x in [0, 1].
XRV_NORMALISATION = {"mean": [0.5], "std": [1.0 / 2048.0]}
XRV_ARCHITECTURES = ("densenet121", "resnet50")


def build_network(card: ModelCard) -> nn.Module:
    """An untrained network with the card's architecture, input channels and outputs."""
    if card.framework == "torchxrayvision":
        return _build_xrv_network(card)
    if card.framework == "smp" or card.task == "segmentation":
        return _build_smp_network(card)
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


SMP_ARCHITECTURES = ("Unet",)


def _build_smp_network(card: ModelCard) -> nn.Module:
    """A segmentation_models_pytorch network (the lung-field model)."""
    if card.framework != "smp" or card.task != "segmentation" or card.segmentation is None:
        raise CheckpointError(
            f"model card of '{card.name or card.architecture}': a segmentation model needs "
            "task 'segmentation', framework 'smp' and a 'segmentation' object; a classifier "
            "needs task 'multiclass' or 'multilabel' with framework 'timm' or 'torchxrayvision'."
        )
    if card.architecture not in SMP_ARCHITECTURES:
        raise CheckpointError(
            f"Unknown segmentation architecture '{card.architecture}'; use one of "
            f"{list(SMP_ARCHITECTURES)}."
        )
    import segmentation_models_pytorch as smp

    try:
        return smp.Unet(
            card.segmentation["encoder"],
            encoder_weights=None,
            in_channels=card.in_channels,
            classes=len(card.labels),
            decoder_channels=tuple(card.segmentation["decoder_channels"]),
        )
    except (KeyError, ValueError, RuntimeError) as exc:  # smp's words for a bad combination
        raise CheckpointError(
            f"The model card's segmentation network could not be built ({exc}); check "
            "'segmentation.encoder' (an smp encoder name such as 'tu-tf_efficientnet_lite0') "
            "and 'segmentation.decoder_channels' (one count per decoder stage)."
        ) from exc


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


def available_checkpoints(roots: Iterable[Path], segmentation: bool = False) -> list[Path]:
    """Checkpoint folders (holding a model card) that are one of ``roots`` or directly
    inside one: what the dashboard offers to load, instead of a free server path.

    Classifiers by default, segmentation models (the lung-field model) with
    ``segmentation``; a folder whose card cannot be read is offered as a classifier, so
    choosing it shows what is wrong with it."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
        for folder in candidates:
            card_path = folder / CARD_FILENAME
            if not card_path.is_file() or folder.resolve() in found:
                continue
            try:
                is_segmentation = load_card(card_path).task == "segmentation"
            except CheckpointError:
                is_segmentation = False
            if is_segmentation == segmentation:
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
    opt-in: bf16 keeps LIME maps equivalent to fp32 but not SHAP Partition maps
    (docs/benchmarks.md).
    ``compile``: run those evaluations through ``torch.compile`` (see
    :meth:`ModelBundle.forward_batch`).
    """
    card_path, weights_path = resolve_checkpoint_paths(Path(path))
    card = load_card(card_path)
    bundle = bundle_from_card(card, weights_path, device, precision)
    bundle.compile = compile
    return bundle


def bundle_from_card(
    card: ModelCard,
    weights_path: Path,
    device: str | torch.device | None = None,
    precision: str = "auto",
    trust_pickle: bool = False,
) -> ModelBundle:
    if not card.is_classifier:
        raise CheckpointError(
            f"'{weights_path.parent}' is a {card.task} model ({card.name or card.architecture}:"
            f" it outlines {', '.join(card.labels)}), not a classifier to explain; choose a "
            "classifier checkpoint such as models/demo-effnet-lite0-covidqu."
        )
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
        # the maps (docs/benchmarks.md).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    # Channels-last: faster forward passes of the demo model on the CPU (docs/benchmarks.md).
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
