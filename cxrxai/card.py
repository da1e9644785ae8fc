"""The model card: everything needed to run and judge a checkpoint, stored as JSON.

It travels with the weights (``<checkpoint>/model_card.json``) so the label order, input
size, normalisation and CAM layer never live in a page's constant. Validation gives a
message naming the field and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cxrxai.errors import CheckpointError

CARD_FILENAME = "model_card.json"
CARD_FORMAT_VERSION = 1
Task = Literal["multiclass", "multilabel"]
Framework = Literal["timm", "torchxrayvision"]
TASKS: tuple[str, ...] = ("multiclass", "multilabel")
FRAMEWORKS: tuple[str, ...] = ("timm", "torchxrayvision")

REQUIRED_FIELDS: dict[str, str] = {
    "architecture": "the timm model name, e.g. 'tf_efficientnet_lite0'",
    "labels": "the class labels in the order of the model's outputs",
    "task": "'multiclass' (softmax) or 'multilabel' (sigmoid)",
    "input_size": "[height, width] the network expects, e.g. [224, 224]",
    "in_channels": "1 for grayscale input, 3 for RGB-replicated input",
    "normalisation": "{'mean': [...], 'std': [...]} applied to an image in [0, 1]",
    "target_layer": "module name of the default CAM layer, e.g. 'bn2'",
}


@dataclass
class ModelCard:
    """Metadata of a checkpoint. Fields in :data:`REQUIRED_FIELDS` must be present.

    ``thresholds`` are the operating points per label (multi-label: probability above
    which a label counts as present; multi-class: unused, argmax decides).
    """

    architecture: str
    labels: list[str]
    task: Task
    input_size: tuple[int, int]
    in_channels: int
    normalisation: dict[str, list[float]]
    target_layer: str
    framework: Framework = "timm"
    name: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format_version: int = CARD_FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            hints = "; ".join(f"'{name}': {REQUIRED_FIELDS[name]}" for name in missing)
            raise CheckpointError(f"{source} is missing required field(s) {missing}. Add {hints}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(
                f"{source} has unknown field(s) {unknown}; known fields: {sorted(known)}"
            )
        card = cls(**data)
        card.input_size = tuple(card.input_size)  # type: ignore[assignment]
        card.validate(source)
        return card

    def validate(self, source: str = "model card") -> None:
        def fail(msg: str) -> None:
            raise CheckpointError(f"{source}: {msg}")

        if self.format_version > CARD_FORMAT_VERSION:
            fail(
                f"format_version {self.format_version} is newer than this cxrxai understands "
                f"({CARD_FORMAT_VERSION}); upgrade cxrxai."
            )
        if self.framework not in FRAMEWORKS:
            fail(f"framework '{self.framework}' is not one of {list(FRAMEWORKS)}")
        if self.task not in TASKS:
            fail(f"task '{self.task}' is not one of {list(TASKS)}")
        if not self.labels or not all(isinstance(lbl, str) for lbl in self.labels):
            fail("labels must be a non-empty list of strings (in output order)")
        if len(self.input_size) != 2 or not all(
            isinstance(s, int) and s > 0 for s in self.input_size
        ):
            fail(f"input_size must be [height, width] of positive integers, got {self.input_size}")
        if self.in_channels not in (1, 3):
            fail(f"in_channels must be 1 or 3, got {self.in_channels}")
        for key in ("mean", "std"):
            values = self.normalisation.get(key)
            if not isinstance(values, list) or len(values) not in (1, self.in_channels):
                fail(
                    f"normalisation['{key}'] must be a list of 1 or in_channels "
                    f"({self.in_channels}) numbers, got {values!r}"
                )
        if any(s == 0 for s in self.normalisation["std"]):
            fail("normalisation['std'] must not contain 0")
        for label, value in self.thresholds.items():
            if label not in self.labels:
                fail(f"threshold given for '{label}', which is not among labels {self.labels}")
            if not 0.0 <= float(value) <= 1.0:
                fail(f"threshold of '{label}' is {value}; thresholds are probabilities in [0, 1]")

    def threshold(self, label: str) -> float:
        return float(self.thresholds.get(label, 0.5))

    def positives(self, probabilities: Sequence[float]) -> list[int]:
        """Output indices the model calls positive, in label order: the most probable class
        (multi-class), or every label at or above its operating threshold (multi-label;
        possibly none). The one definition the pages, targets and evaluation rows use."""
        if self.task == "multiclass":
            return [max(range(len(self.labels)), key=lambda i: probabilities[i])]
        return [
            i for i, label in enumerate(self.labels) if probabilities[i] >= self.threshold(label)
        ]

    def diagnosis(self, probabilities: Sequence[float], with_p: bool = False) -> str:
        """What the model says, for people: the class, or the labels above their operating
        thresholds (most probable first), or that none is; ``with_p`` adds each one's p."""
        found = sorted(self.positives(probabilities), key=lambda i: -probabilities[i])
        if not found:
            return "no finding above its operating threshold"
        return ", ".join(
            f"{self.labels[i]} (p = {probabilities[i]:.2f})" if with_p else self.labels[i]
            for i in found
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def load_card(path: Path) -> ModelCard:
    """Read and validate a model card JSON file."""
    if not path.is_file():
        raise CheckpointError(
            f"Model card '{path}' not found; a checkpoint folder needs "
            f"{CARD_FILENAME} next to its weights."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"Model card '{path}' is not valid JSON: {exc}") from exc
    return ModelCard.from_dict(data, source=f"model card '{path}'")
