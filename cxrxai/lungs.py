"""Lung fields for any chest X-ray: the lung-field model (``models/lungs-unet-lite0-covidqu``,
a U-Net trained on COVID-QU-Ex's lung masks, docs/lungs.md) run on an image.

A predicted outline is always marked as predicted (:func:`predicted_lungs` makes an
anatomy annotation whose author names the model and whose ``predicted`` flag is set), so
it is never mixed up with one a radiologist drew. Where a case has a reference lung mask,
that one serves (:func:`lung_annotation`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from cxrxai.card import ModelCard, load_card
from cxrxai.cases import Annotation, Case
from cxrxai.checkpoint import (
    build_network,
    file_sha256,
    load_weights,
    read_state_dict,
    resolve_checkpoint_paths,
)
from cxrxai.environment import lung_model_path, pick_device
from cxrxai.errors import CheckpointError
from cxrxai.runner import normalise
from cxrxai.thirdparty.smp_parts import masks_and_features

LUNGS = "lungs"


@dataclass
class LungSegmenter:
    """The lung-field model, loaded once; :meth:`probability` and :meth:`mask` take an
    image as the project holds it (HxW float in [0, 1]) and answer at the image's size."""

    model: nn.Module
    card: ModelCard
    device: torch.device
    weights_sha256: str
    folder: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, path: Path | str | None = None, device: str | None = None) -> LungSegmenter:
        """The checkpoint at ``path`` (default: $CXRXAI_LUNG_MODEL, else the bundled one)."""
        card_path, weights_path = resolve_checkpoint_paths(Path(path or lung_model_path()))
        card = load_card(card_path)
        if card.task != "segmentation" or LUNGS not in card.labels:
            raise CheckpointError(
                f"'{card_path.parent}' is a {card.task} model with labels {card.labels[:4]}; "
                f"the lung-field model is a segmentation model with the label '{LUNGS}' "
                "(e.g. models/lungs-unet-lite0-covidqu)."
            )
        model = build_network(card)
        load_weights(model, read_state_dict(weights_path), str(weights_path))
        target = pick_device(device)
        model = model.float().to(target).eval().requires_grad_(False)
        return cls(model, card, target, file_sha256(weights_path), card_path.parent)

    @property
    def name(self) -> str:
        return self.card.name or self.folder.name

    def describe(self) -> str:
        """Which lung-field model: its folder and weights hash (for run records)."""
        return f"{self.folder} (sha256 {self.weights_sha256[:16]})"

    @property
    def threshold(self) -> float:
        return float((self.card.segmentation or {}).get("threshold", 0.5))

    @torch.inference_mode()
    def analyse(self, images01: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per image, the probability of lung (HxW float32 at the image's own size), and
        the encoder's deepest features averaged over the image (B, C): what the
        out-of-distribution check compares with the training images'.

        The whole image is resized to the card's input size (as the classifier's input is)
        and the network's output resized back.
        """
        height, width = self.card.input_size
        batch = np.stack(
            [
                cv2.resize(
                    np.asarray(im, np.float32), (width, height), interpolation=cv2.INTER_AREA
                )
                for im in images01
            ]
        )
        tensor = normalise(torch.from_numpy(batch).unsqueeze(1).to(self.device), self.card)
        with self._lock:  # one forward at a time: the dashboard's sessions share the model
            masks, deepest = masks_and_features(self.model, tensor)
        logits = masks[:, self.card.labels.index(LUNGS)]
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        features = deepest.float().mean(dim=(2, 3)).cpu().numpy()
        resized = [
            cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
            for p, im in zip(probs, images01, strict=True)
        ]
        return resized, features

    def probabilities(self, images01: list[np.ndarray]) -> list[np.ndarray]:
        """Per image, the probability of lung (HxW float32 at the image's own size)."""
        return self.analyse(images01)[0]

    def probability(self, image01: np.ndarray) -> np.ndarray:
        return self.probabilities([image01])[0]

    def mask(self, image01: np.ndarray) -> np.ndarray:
        """The predicted lung fields, bool HxW at the image's size."""
        return self.probability(image01) >= self.threshold

    def annotation(self, image01: np.ndarray) -> Annotation:
        """The predicted lung fields as an anatomy annotation, marked as predicted."""
        return predicted_lungs(self.mask(image01), self.name)


def predicted_lungs(mask: np.ndarray, model_name: str) -> Annotation:
    """An anatomy annotation of ``mask`` whose author names the model and which is
    flagged ``predicted`` (drawn dashed, listed apart from radiologists' marks)."""
    frozen = np.asarray(mask, dtype=bool).copy()
    frozen.setflags(write=False)
    return Annotation(
        "mask",
        LUNGS,
        author=f"predicted by {model_name}",
        role="anatomy",
        mask_loader=lambda: frozen,
        predicted=True,
    )


def lung_annotation(
    case: Case | None, image01: np.ndarray, segmenter: LungSegmenter | None
) -> Annotation | None:
    """The case's reference lung mask when it has one, else the model's (predicted); None
    when there is neither."""
    reference = case.anatomy(LUNGS) if case is not None else None
    if reference is not None:
        return reference
    return segmenter.annotation(image01) if segmenter is not None else None
