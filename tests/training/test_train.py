"""The training CLI end to end on a few real COVID-QU-Ex images (a smoke run), and the
classification metrics against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrxai.checkpoint import load_checkpoint
from cxrxai.cli import main
from cxrxai.training.classification_metrics import multiclass_metrics, multilabel_metrics


def test_multiclass_metrics_by_hand():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    targets = np.array([0, 1, 1, 2])
    m = multiclass_metrics(probs, targets, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    # class a: positives score 0.8; negatives 0.2, 0.6, 0.1 -> AUC 1
    assert m["per_class"]["a"]["auc"] == 1.0


def test_multilabel_metrics_by_hand():
    probs = np.array([[0.9, 0.2], [0.4, 0.8], [0.6, 0.1]])
    targets = np.array([[1, 0], [0, 1], [0, 0]])
    m = multilabel_metrics(probs, targets, ["x", "y"], {"x": 0.5, "y": 0.5})
    assert m["per_label"]["x"]["precision"] == 0.5 and m["per_label"]["x"]["recall"] == 1.0
    assert m["macro_auc"] == 1.0 and m["exact_match_accuracy"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_train_cli_writes_a_loadable_checkpoint(tmp_path, covid_root, task):
    out = tmp_path / "ckpt"
    code = main(
        [
            "train",
            "--data-root",
            str(covid_root.parent),
            "--out",
            str(out),
            "--task",
            task,
            "--limit",
            "4",
            "--epochs",
            "2",
            "--max-steps-per-epoch",
            "2",
            "--batch-size",
            "6",
            "--input-size",
            "96",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["labels"] == ["COVID-19", "Non-COVID", "Normal"]
    assert card["task"] == task and card["training"]["train_cases"] == 12
    assert card["input_size"] == [96, 96] and "resized (no crop) to 96x96" in card["notes"]
    assert card["training"]["best_epoch"] in (1, 2)
    metrics = card["validation_metrics"]
    assert metrics["n"] == 12 and 0.0 <= metrics["macro_auc"] <= 1.0
    if task == "multilabel":
        assert set(card["thresholds"]) == set(card["labels"])
    bundle = load_checkpoint(out, device="cpu")
    assert bundle.predict_proba(np.zeros((96, 96), np.float32)).shape == (1, 3)


def test_evaluate_model_cli_on_any_split_path(tmp_path, covid_root, capsys):
    out = tmp_path / "ckpt"
    main(
        [
            "train",
            "--data-root",
            str(covid_root.parent),
            "--out",
            str(out),
            "--limit",
            "2",
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "1",
            "--input-size",
            "64",
        ]
    )
    capsys.readouterr()
    code = main(
        [
            "evaluate-model",
            "--checkpoint",
            str(out),
            "--split",
            str(covid_root / "Val"),
            "--limit",
            "3",
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 9 and sum(map(sum, metrics["confusion_matrix"])) == 9
