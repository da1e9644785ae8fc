"""The explainer interface shared by every method.

An explainer takes a model bundle, an image (HxW float in [0, 1], the image's own
resolution) and a target, and returns a :class:`Heatmap` of the same HxW on the model's
device, so maps from different methods compare pixel for pixel.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cxrxai.errors import CxrxaiError
from cxrxai.runner import ModelBundle

Target = int | str | None


@dataclass
class Heatmap:
    """One explanation map.

    ``values``: float32 (H, W) on the model's device, at the image's resolution; larger =
    more evidence for ``target_label``. Scale is method-specific (CAMs are min-max
    normalised to [0, 1] by pytorch-grad-cam; LRP/SHAP/LIME keep signed values).
    """

    values: torch.Tensor
    method: str
    target_index: int
    target_label: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    seconds: float = 0.0
    segments: torch.Tensor | None = None  # (H, W) superpixel ids, for LIME / KernelSHAP

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.values.shape[0]), int(self.values.shape[1]))

    def numpy(self) -> np.ndarray:
        return self.values.detach().float().cpu().numpy()


def resolve_targets(bundle: ModelBundle, image: np.ndarray, target: Target = None) -> list[int]:
    """Output indices to explain.

    ``target``: an index or a label name; None means the predicted class (multi-class) or
    every label at or above its operating threshold (multi-label; the predicted label when
    none is).
    """
    labels = bundle.labels
    if isinstance(target, str):
        if target not in labels:
            raise CxrxaiError(f"Target '{target}' is not a label of this model; labels: {labels}")
        return [labels.index(target)]
    if isinstance(target, (int, np.integer)):
        if not 0 <= int(target) < len(labels):
            raise CxrxaiError(
                f"Target index {target} is out of range; the model has {len(labels)} outputs "
                f"({labels})"
            )
        return [int(target)]
    probs = bundle.predict_proba(image)[0]
    return bundle.card.positives(probs) or [int(probs.argmax())]


def to_image_size(values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(h, w) map at input resolution -> (H, W) at the image's, bilinear (the model saw
    the whole image resized, so this is the inverse geometry)."""
    if tuple(values.shape[-2:]) == tuple(shape):
        return values.float()
    resized = F.interpolate(
        values[None, None].float(), size=shape, mode="bilinear", align_corners=False
    )
    return resized[0, 0]


class Explainer(ABC):
    """Base class: subclasses implement :meth:`attribute` at the model's input size."""

    name: ClassVar[str]
    description: ClassVar[str]
    needs_gradients: ClassVar[bool]
    stochastic: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.segments: torch.Tensor | None = None  # set by superpixel methods in attribute()

    def check(self, bundle: ModelBundle) -> None:
        """Refuse settings this model cannot take (a CAM layer it lacks), before any work;
        a CxrxaiError naming the fix. Settings that need no model are checked by
        :func:`~cxrxai.explain.registry.get_explainer`."""
        return None  # most methods take any model

    def explain(
        self, bundle: ModelBundle, image: np.ndarray, target: Target = None, seed: int = 0
    ) -> list[Heatmap]:
        """One heatmap per resolved target (see :func:`resolve_targets`)."""
        if image.ndim != 2:
            raise CxrxaiError(f"Expected a 2-D gray image, got shape {image.shape}")
        heatmaps = []
        for index in resolve_targets(bundle, image, target):
            start = time.perf_counter()
            generator = torch.Generator(device="cpu").manual_seed(seed)
            self.segments = None
            values = self.attribute(bundle, bundle.preprocess(image), index, generator)
            values = to_image_size(values.detach().to(bundle.device), image.shape)
            segments = None
            if self.segments is not None:
                segments = F.interpolate(
                    self.segments[None, None].float(), size=image.shape, mode="nearest"
                )[0, 0].long()
            if bundle.device.type == "cuda":
                torch.cuda.synchronize(bundle.device)
            heatmaps.append(
                Heatmap(
                    values,
                    self.name,
                    index,
                    bundle.labels[index],
                    dict(self.params),
                    seed if self.stochastic else None,
                    time.perf_counter() - start,
                    segments,
                )
            )
        return heatmaps

    @abstractmethod
    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        """(h, w) map for output ``index`` of the normalised input ``batch`` (1, C, h, w)."""
