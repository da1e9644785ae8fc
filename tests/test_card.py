"""Model card validation: every required field, with errors that say what to add."""

from __future__ import annotations

import json

import pytest

from cxrxai.card import REQUIRED_FIELDS, ModelCard, load_card
from cxrxai.errors import CheckpointError


def card_dict(**overrides):
    data = {
        "architecture": "tf_efficientnet_lite0",
        "labels": ["COVID-19", "Non-COVID", "Normal"],
        "task": "multiclass",
        "input_size": [224, 224],
        "in_channels": 1,
        "normalisation": {"mean": [0.5], "std": [0.5]},
        "target_layer": "bn2",
    }
    data.update(overrides)
    return data


def test_round_trip(tmp_path):
    card = ModelCard.from_dict(card_dict(thresholds={"Normal": 0.7}))
    card.save(tmp_path / "card.json")
    again = load_card(tmp_path / "card.json")
    assert again == card and again.input_size == (224, 224)
    assert again.threshold("Normal") == 0.7 and again.threshold("COVID-19") == 0.5


@pytest.mark.parametrize("field", list(REQUIRED_FIELDS))
def test_missing_field_named_with_hint(field):
    data = card_dict()
    del data[field]
    with pytest.raises(CheckpointError, match=f"missing required field.*'{field}'"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "regression"}, "task 'regression'"),
        ({"labels": []}, "labels must be a non-empty list"),
        ({"input_size": [224]}, "input_size"),
        ({"in_channels": 2}, "in_channels must be 1 or 3"),
        ({"normalisation": {"mean": [0.5, 0.5], "std": [0.5]}}, "normalisation\\['mean'\\]"),
        ({"normalisation": {"mean": [0.5], "std": [0.0]}}, "must not contain 0"),
        ({"thresholds": {"Pneumonia": 0.5}}, "not among labels"),
        ({"thresholds": {"Normal": 1.5}}, "probabilities in \\[0, 1\\]"),
        ({"framework": "keras"}, "framework 'keras'"),
        ({"format_version": 99}, "upgrade cxrxai"),
        ({"colour": "red"}, "unknown field"),
    ],
)
def test_invalid_values(overrides, message):
    with pytest.raises(CheckpointError, match=message):
        ModelCard.from_dict(card_dict(**overrides))


def test_bad_json_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_card(tmp_path / "model_card.json")
    (tmp_path / "model_card.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_card(tmp_path / "model_card.json")
    (tmp_path / "model_card.json").write_text(json.dumps([1]))
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        load_card(tmp_path / "model_card.json")


def _card(task: str, thresholds: dict[str, float] | None = None) -> ModelCard:
    return ModelCard(
        architecture="resnet18",
        labels=["x", "y", "z"],
        task=task,
        input_size=(32, 32),
        in_channels=1,
        normalisation={"mean": [0.5], "std": [0.25]},
        target_layer="layer4",
        thresholds=thresholds or {},
    )


def test_positives_and_diagnosis():
    multiclass = _card("multiclass")
    assert multiclass.positives([0.2, 0.5, 0.3]) == [1]
    assert multiclass.diagnosis([0.2, 0.5, 0.3], with_p=True) == "y (p = 0.50)"
    multilabel = _card("multilabel", {"x": 0.3, "y": 0.9})  # z: 0.5 by default
    assert multilabel.positives([0.3, 0.8, 0.6]) == [0, 2]  # at the threshold counts
    assert multilabel.diagnosis([0.3, 0.8, 0.6]) == "z, x"  # most probable first
    assert multilabel.positives([0.1, 0.8, 0.4]) == []
    assert multilabel.diagnosis([0.1, 0.8, 0.4]) == "no finding above its operating threshold"
