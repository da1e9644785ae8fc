"""The bundled lung-field model: its card, its Dice on real Val images, its outline on
a real CR radiograph, and how predicted lungs are marked and chosen."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.cases import Annotation, Case
from cxrxai.checkpoint import available_checkpoints, load_checkpoint
from cxrxai.environment import DEMO_CHECKPOINT, LUNG_CHECKPOINT, MODELS_DIR
from cxrxai.errors import CheckpointError
from cxrxai.lungs import LungSegmenter, lung_annotation, predicted_lungs


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter.load(LUNG_CHECKPOINT, device="cpu")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_card_size_and_reported_dice(segmenter):
    card = segmenter.card
    assert card.task == "segmentation" and card.framework == "smp" and card.labels == ["lungs"]
    assert (LUNG_CHECKPOINT / "weights.safetensors").stat().st_size <= 15_000_000
    assert card.validation_metrics["dice_mean"] >= 0.96
    assert card.validation_metrics["images"] == 932  # all of Val


def test_dice_on_real_val_images(segmenter, covid_root):
    from cxrxai.datasets.covidqu import load_covid_qu_ex

    cases = load_covid_qu_ex(covid_root / "Val")[::20]  # 47 cases over the three classes
    scores = []
    for case in cases:
        image = case.load_image()
        truth = case.anatomy("lungs").load_mask()
        scores.append(_dice(segmenter.mask(image.pixels), truth))
    assert len(scores) == 47
    assert np.mean(scores) >= 0.96, np.round(scores, 3)
    assert min(scores) >= 0.8


def test_two_lungs_on_a_real_cr_radiograph(segmenter, rg1_files):
    import cv2

    from cxrxai.imageio import read_image

    image = read_image(rg1_files["RG1_UNCR"])
    mask = segmenter.mask(image.pixels)
    assert mask.shape == image.shape  # answered at the image's own size
    assert 0.2 <= mask.mean() <= 0.5
    _count, _labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    largest = np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:2] + 1
    assert all(stats[i, cv2.CC_STAT_AREA] > 0.1 * mask.size for i in largest)
    xs = sorted(centroids[i][0] / mask.shape[1] for i in largest)
    assert xs[0] < 0.45 < 0.55 < xs[1]  # one lung each side of the midline


def test_a_predicted_outline_is_marked_and_the_reference_wins(segmenter):
    image = np.zeros((64, 64), np.float32)
    predicted = predicted_lungs(np.ones((64, 64), bool), "lung model")
    assert predicted.predicted and predicted.role == "anatomy" and "predicted" in predicted.author
    assert predicted.load_mask().all()
    reference = Annotation(
        "mask", "lungs", "QaTa-COV19", role="anatomy", mask_loader=lambda: np.zeros((64, 64), bool)
    )
    with_reference = Case("c", "x.png", ["Normal"], [reference])
    assert lung_annotation(with_reference, image, segmenter) is reference
    without = Case("d", "x.png", ["Normal"], [])
    chosen = lung_annotation(without, image, segmenter)
    assert chosen is not None and chosen.predicted
    assert lung_annotation(without, image, None) is None


def test_each_loader_refuses_the_other_kind_of_model():
    with pytest.raises(CheckpointError, match="not a classifier"):
        load_checkpoint(LUNG_CHECKPOINT, device="cpu")
    with pytest.raises(CheckpointError, match="segmentation model"):
        LungSegmenter.load(DEMO_CHECKPOINT, device="cpu")
    assert LUNG_CHECKPOINT.resolve() not in available_checkpoints([MODELS_DIR])
    assert DEMO_CHECKPOINT.resolve() in available_checkpoints([MODELS_DIR])
    assert available_checkpoints([MODELS_DIR], segmentation=True) == [LUNG_CHECKPOINT.resolve()]
