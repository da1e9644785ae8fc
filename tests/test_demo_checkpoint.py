"""The bundled demo checkpoint: its card is valid, and its validation numbers are real --
recomputed here on the shared Val split, they match the card and clear the bar."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.environment import DEMO_CHECKPOINT
from cxrxai.training.train import evaluate_split, load_split, predict_split


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(DEMO_CHECKPOINT, device="cpu")


def test_card_describes_the_demo(demo):
    card = demo.card
    assert card.architecture == "tf_efficientnet_lite0" and card.task == "multiclass"
    assert card.labels == ["COVID-19", "Non-COVID", "Normal"]
    assert card.training["train_split"] == "Train" and card.training["selection_split"] == "Val"
    assert "LRP" in card.notes
    height, width = card.input_size
    assert f"resized (no crop) to {width}x{height}" in card.notes  # the notes say the truth
    assert (DEMO_CHECKPOINT / "weights.safetensors").stat().st_size < 25 * 2**20


def test_validation_metrics_recomputed_on_val(demo, covid_root):
    cases = load_covid_qu_ex(covid_root / "Val")
    split = load_split(cases, demo.labels, "multiclass", demo.card.input_size[0])
    metrics = evaluate_split(
        predict_split(demo.model, split, demo.card, demo.device), split, demo.card
    )
    assert metrics["n"] == 932
    assert metrics["accuracy"] >= 0.90 and metrics["macro_auc"] >= 0.97
    recorded = demo.card.validation_metrics
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=2e-3)
    assert metrics["macro_auc"] == pytest.approx(recorded["macro_auc"], abs=2e-3)
    difference = np.abs(np.array(metrics["confusion_matrix"]) - recorded["confusion_matrix"])
    assert difference.max() <= 2
