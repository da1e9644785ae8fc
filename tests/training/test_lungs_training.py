"""Training the lung-field model: the ImageNet encoder, masks moved with their image,
a short run on synthetic pairs, and the checkpoint it writes."""

from __future__ import annotations

import numpy as np
import torch

from cxrxai.card import load_card
from cxrxai.lungs import LungSegmenter
from cxrxai.training.augment import augment_batch
from cxrxai.training.lungs import (
    LUNG_RANGES,
    LungData,
    LungTrainConfig,
    build_lung_network,
    dice_per_image,
    imagenet_encoder_state,
    train_lung_model,
    write_lung_checkpoint,
)


def test_encoder_starts_from_imagenet():
    state = imagenet_encoder_state()
    model = build_lung_network(pretrained=True)
    encoder = model.encoder.model.state_dict()
    assert set(encoder) == set(state)
    assert all(torch.equal(encoder[k], state[k]) for k in state)
    # the gray stem is the sum of the three RGB kernels: not a fresh random init
    assert encoder["conv_stem.weight"].shape[1] == 1
    assert not torch.equal(
        encoder["conv_stem.weight"],
        build_lung_network().encoder.model.state_dict()["conv_stem.weight"],
    )


def test_masks_move_with_their_image():
    generator = torch.Generator().manual_seed(3)
    images = torch.zeros(4, 1, 64, 64)
    images[:, :, 20:40, 10:30] = 1.0
    masks = images > 0.5
    warped, moved = augment_batch(images, generator, LUNG_RANGES, masks=masks)
    assert moved.shape == masks.shape and set(moved.unique().tolist()) <= {0.0, 1.0}
    # the bright square and its mask still coincide after rotation, zoom and shift
    assert dice_per_image(warped > warped.mean(dim=(2, 3), keepdim=True), moved > 0.5).min() > 0.9
    assert not torch.equal(moved, masks.float())


def test_dice_per_image():
    a = torch.zeros(2, 8, 8, dtype=torch.bool)
    b = torch.zeros(2, 8, 8, dtype=torch.bool)
    a[0, :4], b[0, :2] = True, True  # 32 vs 16 pixels, 16 shared: 2*16/48
    assert torch.allclose(dice_per_image(a, b), torch.tensor([2 / 3, 1.0]))  # both empty = 1


def _synthetic(count: int, seed: int) -> LungData:
    """Dark ellipses ('lungs') on a brighter body: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    images, masks = [], []
    for _ in range(count):
        cx, cy = rng.uniform(24, 40, 2)
        mask = ((xx - cx + 12) / 8) ** 2 + ((yy - cy) / 14) ** 2 < 1
        mask |= ((xx - cx - 12) / 8) ** 2 + ((yy - cy) / 14) ** 2 < 1
        image = np.where(mask, 60, 190) + rng.normal(0, 10, (64, 64))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask)
    return LungData(np.stack(images), np.stack(masks), [f"s{i}" for i in range(count)])


def test_train_and_write_a_checkpoint(tmp_path):
    train, val = _synthetic(16, 0), _synthetic(8, 1)
    config = LungTrainConfig(epochs=3, batch_size=8, lr=3e-3)
    model, summary = train_lung_model(train, val, config, torch.device("cpu"), log=lambda _: None)
    assert summary["epochs_run"] == 3 and len(summary["history"]) == 3
    assert summary["val_dice_mean"] == max(h["val_dice"] for h in summary["history"])
    card = write_lung_checkpoint(model, summary, val, tmp_path / "lungs")
    assert card.task == "segmentation" and card.validation_metrics["images"] == 8
    assert load_card(tmp_path / "lungs" / "model_card.json").segmentation["threshold"] == 0.5
    loaded = LungSegmenter.load(tmp_path / "lungs", device="cpu")
    mask = loaded.mask(val.images[0].astype(np.float32) / 255.0)
    assert mask.shape == (64, 64) and mask.dtype == bool
