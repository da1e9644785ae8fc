"""Faithfulness: pixel replacement and deletion / insertion curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.errors import CxrxaiError
from cxrxai.metrics import faithfulness as fa
from cxrxai.runner import normalise

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def tiny_bundle(tiny_checkpoint):
    # fp32: these tests compare with single forward passes (a GPU defaults to bf16)
    folder = tiny_checkpoint(labels=("a", "b"), size=32)
    return load_checkpoint(folder, device=DEVICE, precision="fp32")


def test_masks_take_the_first_pixels_of_the_order():
    order = torch.tensor([3, 0, 2, 1])
    masks = fa._masks(order, [0, 1, 3], torch.Size([2, 2]))
    assert masks.view(3, 4).tolist() == [
        [False, False, False, False],
        [False, False, False, True],
        [True, False, True, True],
    ]


def test_pixel_importance_equals_a_manual_replacement(tiny_bundle):
    rng = np.random.default_rng(0)
    image = rng.random((32, 32), dtype=np.float32)
    heat = torch.from_numpy(rng.random((32, 32), dtype=np.float32))
    rows = fa.pixel_importance(tiny_bundle, image, heat, 1, percents=(10, 50))
    assert [(r.replacement, r.percent) for r in rows] == [
        (rep, p) for rep in fa.REPLACEMENTS for p in (10, 50)
    ]
    assert rows[0].p_original == pytest.approx(tiny_bundle.predict_proba(image)[0, 1], abs=1e-5)
    # by hand: the top 50 % pixels set to the image mean
    top = heat.flatten().argsort(descending=True)[:512]
    manual = torch.from_numpy(image).flatten().clone()
    manual[top] = float(image.mean())
    with torch.no_grad():
        batch = normalise(manual.view(1, 1, 32, 32).to(tiny_bundle.device), tiny_bundle.card)
        expected = tiny_bundle.probabilities(tiny_bundle.model(batch))[0, 1].item()
    assert rows[1].p_replaced == pytest.approx(expected, abs=1e-5)
    assert rows[1].drop == pytest.approx(rows[1].p_original - expected, abs=1e-5)
    with pytest.raises(CxrxaiError, match="Unknown replacement"):
        fa.pixel_importance(tiny_bundle, image, heat, 0, replacements=("noise",))


def test_curves_end_points(tiny_bundle):
    rng = np.random.default_rng(1)
    image = rng.random((40, 40), dtype=np.float32)  # resized to the 32 px input
    curves = fa.deletion_insertion(tiny_bundle, image, torch.rand(40, 40), 0, steps=4)
    assert curves.fractions == [0, 0.25, 0.5, 0.75, 1.0]
    assert curves.deletion[0] == pytest.approx(curves.insertion[-1], abs=1e-5)  # the image
    assert curves.deletion[-1] == pytest.approx(curves.insertion[0], abs=1e-5)  # the baseline
    assert 0.0 <= curves.deletion_auc <= 1.0 and 0.0 <= curves.insertion_auc <= 1.0


def test_gradcam_is_more_faithful_than_its_inverse_on_real_images(covid_root):
    """On the demo model, deleting what Grad-CAM calls important first lowers P(COVID-19)
    faster than deleting the least important first."""
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.explain import get_explainer

    bundle = load_checkpoint(DEMO_CHECKPOINT, device=DEVICE)
    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:4]
    target = bundle.labels.index("COVID-19")
    forward, backward = [], []
    for case in cases:
        image = case.load_image().pixels
        (heat,) = get_explainer("gradcam").explain(bundle, image, target=target)
        forward.append(fa.deletion_insertion(bundle, image, heat.values, target).deletion_auc)
        backward.append(fa.deletion_insertion(bundle, image, -heat.values, target).deletion_auc)
    assert np.mean(forward) < np.mean(backward)
