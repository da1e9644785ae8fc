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
    with pytest.raises(CheckpointError, match=f"missing required field '{field}': add .+"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "regression"}, r"'task': 'regression' is not one of"),
        ({"labels": []}, r"'labels': \[\] should be non-empty"),
        ({"input_size": [224]}, "'input_size'"),
        ({"in_channels": 2}, r"'in_channels': 2 is not one of \[1, 3\]"),
        ({"normalisation": {"mean": [0.5, 0.5], "std": [0.5]}}, "normalisation\\['mean'\\]"),
        ({"normalisation": {"mean": [0.5], "std": [0.0]}}, "'normalisation.std.0'"),
        ({"thresholds": {"Pneumonia": 0.5}}, "not among labels"),
        ({"thresholds": {"Normal": 1.5}}, "'thresholds.Normal': 1.5 is greater than the maximum"),
        ({"framework": "keras"}, "'framework': 'keras' is not one of"),
        ({"format_version": 99}, "upgrade cxrxai"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        # hostile or broken cards: each one CheckpointError naming the field
        ({"format_version": "2"}, "'format_version': '2' is not of type 'integer'"),
        ({"normalisation": [0.5, 0.5]}, "'normalisation': .* is not of type 'object'"),
        ({"thresholds": [0.5]}, "'thresholds': .* is not of type 'object'"),
        ({"labels": "abc"}, "'labels': 'abc' is not of type 'array'"),
        ({"labels": ["a", "a"]}, "'labels'.*non-unique"),
        ({"in_channels": True}, "'in_channels': True is not of type 'integer'"),
        ({"input_size": [100000, 100000]}, "'input_size.0': 100000 is greater than the maximum"),
        ({"input_size": [224.5, 224]}, "'input_size.0': 224.5 is not of type 'integer'"),
        ({"architecture": "../../etc/passwd"}, "'architecture': .* does not match"),
        ({"notes": "x" * 100_000}, "'notes': 'xxx.*is too long"),
        ({"training": "yesterday"}, "'training': 'yesterday' is not of type 'object'"),
        ({"target_layer": None}, "'target_layer': None is not of type 'string'"),
    ],
)
def test_invalid_values(overrides, message):
    with pytest.raises(CheckpointError, match=message) as info:
        ModelCard.from_dict(card_dict(**overrides))
    assert len(str(info.value)) < 2000  # a message, not a dump of the card


def test_every_problem_is_named_at_once():
    with pytest.raises(CheckpointError) as info:
        ModelCard.from_dict(card_dict(task="x", in_channels=7, labels="abc"))
    text = str(info.value)
    assert "'task'" in text and "'in_channels'" in text and "'labels'" in text


def test_hostile_card_files(tmp_path):
    path = tmp_path / "model_card.json"
    path.write_text("[" * 100_000 + "]" * 100_000)  # nested beyond Python's recursion limit
    with pytest.raises(CheckpointError, match="nests its JSON too deeply"):
        load_card(path)
    path.write_text(json.dumps(card_dict(notes="x" * 2_000_000)))
    with pytest.raises(CheckpointError, match="a card is a few KB"):
        load_card(path)


def test_bad_json_and_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_card(tmp_path / "model_card.json")
    (tmp_path / "model_card.json").write_text("{oops")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_card(tmp_path / "model_card.json")
    (tmp_path / "model_card.json").write_text(json.dumps([1]))
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        load_card(tmp_path / "model_card.json")


def test_positives_and_diagnosis(small_card):
    multiclass = small_card("multiclass")
    assert multiclass.positives([0.2, 0.5, 0.3]) == [1]
    assert multiclass.diagnosis([0.2, 0.5, 0.3], with_p=True) == "y (p = 0.50)"
    multilabel = small_card("multilabel", {"x": 0.3, "y": 0.9})  # z: 0.5 by default
    assert multilabel.positives([0.3, 0.8, 0.6]) == [0, 2]  # at the threshold counts
    assert multilabel.diagnosis([0.3, 0.8, 0.6]) == "z, x"  # most probable first
    assert multilabel.positives([0.1, 0.8, 0.4]) == []
    assert multilabel.diagnosis([0.1, 0.8, 0.4]) == "no finding above its operating threshold"


def _segmentation_dict(**overrides):
    data = card_dict(architecture="Unet", labels=["lungs"], task="segmentation", framework="smp")
    del data["target_layer"]
    data["segmentation"] = {"encoder": "tu-tf_efficientnet_lite0", "decoder_channels": [16, 8]}
    data.update(overrides)
    return data


def test_each_task_requires_its_own_fields(tmp_path):
    card = ModelCard.from_dict(_segmentation_dict())
    assert not card.is_classifier and card.target_layer is None
    card.save(tmp_path / "seg.json")  # no empty classifier fields written
    assert "target_layer" not in json.loads((tmp_path / "seg.json").read_text())
    assert load_card(tmp_path / "seg.json") == card
    without = _segmentation_dict()
    del without["segmentation"]
    with pytest.raises(CheckpointError, match="missing required field 'segmentation': add"):
        ModelCard.from_dict(without)
    classifier = card_dict()
    del classifier["target_layer"]
    with pytest.raises(CheckpointError, match="missing required field 'target_layer': add"):
        ModelCard.from_dict(classifier)
    with pytest.raises(CheckpointError, match="decoder_channels"):
        ModelCard.from_dict(
            _segmentation_dict(segmentation={"encoder": "x", "decoder_channels": [0]})
        )


def test_the_label_explained_by_default_is_the_most_probable_positive():
    """Review, the demo and studies explain this label: with per-label thresholds the
    arg-max (Non-COVID, below its threshold) is not it."""
    card = ModelCard(
        "resnet18", ["COVID-19", "Non-COVID", "Normal"], "multilabel", (224, 224), 1,
        {"mean": [0.5], "std": [0.5]}, thresholds={"COVID-19": 0.1, "Non-COVID": 0.6},
    )  # fmt: skip
    # positives: COVID-19 only (Normal's default threshold is 0.5)
    assert card.positives([0.2, 0.5, 0.3]) == [0]
    assert card.explained_by_default([0.2, 0.5, 0.3]) == 0
    assert card.explained_by_default([0.05, 0.5, 0.3]) == 1  # none positive: the most probable
    multiclass = ModelCard(
        "resnet18", ["a", "b"], "multiclass", (224, 224), 1, {"mean": [0.5], "std": [0.5]}
    )
    assert multiclass.explained_by_default([0.3, 0.7]) == 1
