"""The explainer interface shared by every method.

An explainer takes a model bundle, an image (HxW float in [0, 1], the image's own
resolution) and a target, and returns a :class:`Heatmap` of the same HxW on the model's
device, so maps from different methods compare pixel for pixel.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from cxrxai.errors import CxrxaiError
from cxrxai.runner import ModelBundle

Target = int | str | None

# Names that earlier versions used for a setting that now has one spelling everywhere:
# results rows, CLI scripts and links made with them still read.
OLD_NAMES = {"num_samples": "n_samples", "nsamples": "n_samples", "max_evals": "n_samples"}


@dataclass(frozen=True)
class Setting:
    """One setting of an explainer, declared next to its class: its type, default, what it
    means and what values it may take. The CLI, the Review page and the checks read it."""

    name: str
    kind: type  # int, float or str
    default: Any
    help: str
    optional: bool = False  # None is allowed (and means "the default behaviour")
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None  # the only values allowed
    suggestions: tuple[str, ...] | None = None  # offered in the UI; others allowed
    pattern: re.Pattern[str] | None = None
    ui: bool = True  # False: speed only (the map does not depend on it), CLI/library only

    def but(self, **changes: Any) -> Setting:
        """The same setting with another default (or help), for another method."""
        return replace(self, **changes)

    def check(self, method: str, value: Any) -> Any:
        """The value, converted to ``kind`` where lossless, or a CxrxaiError naming the fix."""
        where = f"{method} setting '{self.name}'"
        if value is None:
            if self.optional:
                return None
            raise CxrxaiError(f"The {where} needs a value ({self.help}).")
        if self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool):
            raise CxrxaiError(
                f"The {where} must be a{'n' if self.kind is int else ''} "
                f"{self.kind.__name__}, got {value!r}."
            )
        if self.minimum is not None and value < self.minimum:
            raise CxrxaiError(f"The {where} must be at least {self.minimum:g}, got {value}.")
        if self.maximum is not None and value > self.maximum:
            raise CxrxaiError(f"The {where} must be at most {self.maximum:g}, got {value}.")
        if self.choices is not None and value not in self.choices:
            raise CxrxaiError(f"The {where} must be one of {list(self.choices)}, got '{value}'.")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            examples = ", ".join(self.suggestions or ())
            raise CxrxaiError(f"The {where} must look like one of: {examples}; got '{value}'.")
        return value

    def parse(self, method: str, text: str) -> Any:
        """A value typed on the command line or read from a variant name."""
        text = text.strip()
        if self.optional and text.lower() in ("", "none", "default"):
            return None
        if self.kind in (int, float):
            try:
                number = float(text) if self.kind is float else int(text)
            except ValueError:
                raise CxrxaiError(
                    f"The {method} setting '{self.name}' must be a number, got '{text}'."
                ) from None
            return self.check(method, number)
        return self.check(method, text)


# Settings several methods share (each method may change the default).
LAYER = Setting(
    "layer", str, None, "CAM layer, a module name (default: the model card's target layer)",
    optional=True,
)  # fmt: skip
BATCH_SIZE = Setting(
    "batch_size", int, None, "images per forward pass (speed only)", optional=True, minimum=1,
    ui=False,
)  # fmt: skip
SIGMA = Setting(
    "sigma", float, 0.15, "noise std, fraction of the intensity range", minimum=0.0, maximum=1.0
)
N_SEGMENTS = Setting("n_segments", int, 50, "superpixels (about, SLIC)", minimum=2)


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
    from_cache: bool = False  # read from the disk cache; ``seconds`` is when it was made

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
    # Tens of seconds per radiograph on a CPU at its defaults: the dashboard computes the
    # demo cases' maps of such methods in the background when its server starts.
    slow_on_cpu: ClassVar[bool] = False

    settings: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, **params: Any) -> None:
        """The method with its settings (:attr:`settings`), each checked first: a wrong
        one is a clear message before any work, not a TypeError mid-run. Unset settings
        take their defaults; each is an attribute of the explainer."""
        known = {setting.name: setting for setting in self.settings}
        given = {OLD_NAMES.get(name, name): value for name, value in params.items()}
        for name in given:
            if name not in known:
                raise CxrxaiError(
                    f"'{name}' is not a setting of {self.name}; its settings: "
                    f"{', '.join(known) or 'none'}."
                )
        self.params = {
            name: setting.check(self.name, given[name]) if name in given else setting.default
            for name, setting in known.items()
        }
        for name, value in self.params.items():
            setattr(self, name, value)
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
