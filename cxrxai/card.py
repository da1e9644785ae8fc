"""The model card: everything needed to run and judge a checkpoint, stored as JSON.

It travels with the weights (``<checkpoint>/model_card.json``) so the label order, input
size, normalisation and CAM layer never live in a page's constant. Validation gives a
message naming the field and the fix.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cxrxai.errors import CheckpointError

CARD_FILENAME = "model_card.json"
CARD_FORMAT_VERSION = 1
Task = Literal["multiclass", "multilabel", "segmentation"]
Framework = Literal["timm", "torchxrayvision", "smp"]
TASKS: tuple[str, ...] = ("multiclass", "multilabel", "segmentation")
CLASSIFIER_TASKS: tuple[str, ...] = ("multiclass", "multilabel")
FRAMEWORKS: tuple[str, ...] = ("timm", "torchxrayvision", "smp")

MAX_CARD_BYTES = 1 << 20
MAX_INPUT_SIDE = 2048  # larger inputs would be resized to gigabytes (100000 px: 40 GB)

REQUIRED_FIELDS: dict[str, str] = {
    "architecture": "the timm model name, e.g. 'tf_efficientnet_lite0'",
    "labels": "the class labels in the order of the model's outputs",
    "task": "'multiclass' (softmax), 'multilabel' (sigmoid) or 'segmentation'",
    "input_size": "[height, width] the network expects, e.g. [224, 224]",
    "in_channels": "1 for grayscale input, 3 for RGB-replicated input",
    "normalisation": "{'mean': [...], 'std': [...]} applied to an image in [0, 1]",
}
# Required by task: a classifier names its CAM layer, a segmentation model its decoder.
CLASSIFIER_FIELDS: dict[str, str] = {
    "target_layer": "module name of the default CAM layer, e.g. 'bn2'",
}
SEGMENTATION_FIELDS: dict[str, str] = {
    "segmentation": "{'encoder': smp encoder name, 'decoder_channels': [...], "
    "'threshold': probability in [0, 1]}",
}
FIELD_HINTS: dict[str, str] = (
    REQUIRED_FIELDS
    | CLASSIFIER_FIELDS
    | SEGMENTATION_FIELDS
    | {
        "framework": "'timm', 'torchxrayvision' or 'smp' (segmentation_models_pytorch)",
        "name": "a short display name",
        "thresholds": "{label: probability in [0, 1]} operating points (multi-label)",
        "training": "an object describing data, split and config",
        "validation_metrics": "an object of metrics",
        "notes": "free text",
        "format_version": f"the integer {CARD_FORMAT_VERSION}",
    }
)

_NUMBERS = {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3}
# The whole card, checked by jsonschema (a maintained validator; every problem reported
# with the field it is in) before any of it is used.
CARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": list(REQUIRED_FIELDS),
    "if": {"properties": {"task": {"const": "segmentation"}}, "required": ["task"]},
    "then": {"required": list(SEGMENTATION_FIELDS)},
    "else": {"required": list(CLASSIFIER_FIELDS)},
    "additionalProperties": False,
    "properties": {
        "architecture": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,200}$"},
        "labels": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "task": {"enum": list(TASKS)},
        "input_size": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {"type": "integer", "minimum": 8, "maximum": MAX_INPUT_SIDE},
        },
        "in_channels": {"type": "integer", "enum": [1, 3]},
        "normalisation": {
            "type": "object",
            "required": ["mean", "std"],
            "additionalProperties": False,
            "properties": {
                "mean": _NUMBERS,
                "std": {**_NUMBERS, "items": {"type": "number", "exclusiveMinimum": 0}},
            },
        },
        "target_layer": {"type": "string", "minLength": 1, "maxLength": 300},
        "segmentation": {
            "type": "object",
            "required": ["encoder", "decoder_channels"],
            "additionalProperties": False,
            "properties": {
                "encoder": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,200}$"},
                "decoder_channels": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 8,
                    "items": {"type": "integer", "minimum": 1, "maximum": 4096},
                },
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "framework": {"enum": list(FRAMEWORKS)},
        "name": {"type": "string", "maxLength": 200},
        "thresholds": {
            "type": "object",
            "maxProperties": 1000,
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "training": {"type": "object"},
        "validation_metrics": {"type": "object"},
        "notes": {"type": "string", "maxLength": 20000},
        "format_version": {"type": "integer", "minimum": 1},
    },
}


_SHORT = reprlib.Repr()  # values in messages shortened: a card may hold anything
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 40, 40, 4, 4


def schema_problems(data: Any) -> list[str]:
    """Every way ``data`` breaks :data:`CARD_SCHEMA`, one line each naming the field,
    the rule and the fix (values shortened: a card may hold anything)."""
    from jsonschema import Draft202012Validator

    problems = []
    for error in sorted(Draft202012Validator(CARD_SCHEMA).iter_errors(data), key=str):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    where = ".".join([*path, name])
                    hint = FIELD_HINTS.get(name, "") if not path else ""
                    problems.append(
                        f"missing required field '{where}'" + (f": add {hint}" if hint else "")
                    )
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {})
            extra = sorted(str(k)[:40] for k in error.instance if k not in allowed)
            problems.append(
                f"unknown field(s) {extra[:10]} in '{'.'.join(path) or 'the card'}'; "
                f"known fields: {sorted(allowed)}"
            )
            continue
        where = ".".join(path) or "the card"
        rule = error.message.replace(repr(error.instance), _SHORT.repr(error.instance))
        rule = rule if len(rule) <= 300 else rule[:297] + "..."
        hint = FIELD_HINTS.get(path[0], "") if path else ""
        problems.append(f"'{where}': {rule}" + (f" (expected {hint})" if hint else ""))
    return problems


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
    target_layer: str | None = None  # classifiers
    framework: Framework = "timm"
    name: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    validation_metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    segmentation: dict[str, Any] | None = None  # segmentation models
    format_version: int = CARD_FORMAT_VERSION

    @property
    def is_classifier(self) -> bool:
        return self.task in CLASSIFIER_TASKS

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object, got {type(data).__name__}")
        _check_version(data.get("format_version"), source)  # before the newer fields' errors
        problems = schema_problems(data)
        if problems:
            raise CheckpointError(f"{source} is not a valid model card: " + "; ".join(problems))
        card = cls(**data)
        card.input_size = tuple(card.input_size)  # type: ignore[assignment]
        card.validate(source)
        return card

    def validate(self, source: str = "model card") -> None:
        """The card's fields against :data:`CARD_SCHEMA`, then what relates fields to
        each other; a CheckpointError naming each problem and its fix."""

        def fail(msg: str) -> None:
            raise CheckpointError(f"{source}: {msg}")

        _check_version(self.format_version, source)
        problems = schema_problems(self.to_dict())
        if problems:
            fail("not a valid model card: " + "; ".join(problems))
        for key in ("mean", "std"):
            values = self.normalisation[key]
            if len(values) not in (1, self.in_channels):
                fail(
                    f"normalisation['{key}'] must be a list of 1 or in_channels "
                    f"({self.in_channels}) numbers, got {len(values)}"
                )
        for label in self.thresholds:
            if label not in self.labels:
                fail(f"threshold given for '{label}', which is not among labels {self.labels}")

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

    def explained_by_default(self, probabilities: Sequence[float]) -> int:
        """The output a view explains unless told otherwise: the most probable label the
        model calls positive, else (multi-label, none above its threshold) the most probable
        label. Not always the arg-max: with per-label thresholds a label below its own can
        be more probable than one above. The one rule of Review, the demo and studies."""
        chosen = self.positives(probabilities) or range(len(self.labels))
        return max(chosen, key=lambda i: probabilities[i])

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
        for optional in ("target_layer", "segmentation"):  # one of the two, by task
            if data[optional] is None:
                del data[optional]
        return data

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def _check_version(version: object, source: str) -> None:
    """Refuse a card of a newer format; a version that is no integer is the schema's to
    report."""
    if isinstance(version, int) and not isinstance(version, bool) and version > CARD_FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: format_version {version} is newer than this cxrxai understands "
            f"({CARD_FORMAT_VERSION}); upgrade cxrxai."
        )


def load_card(path: Path) -> ModelCard:
    """Read and validate a model card JSON file."""
    if not path.is_file():
        raise CheckpointError(
            f"Model card '{path}' not found; a checkpoint folder needs "
            f"{CARD_FILENAME} next to its weights."
        )
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise CheckpointError(
            f"Model card '{path}' is {size:,} bytes; a card is a few KB (at most "
            f"{MAX_CARD_BYTES:,} bytes)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"Model card '{path}' is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(
            f"Model card '{path}' nests its JSON too deeply to be a model card."
        ) from exc
    return ModelCard.from_dict(data, source=f"model card '{path}'")
