"""Batch evaluation: rows, resuming after an interruption, NaN as NULL, CSV, real data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cxrxai.cases import Annotation, Case
from cxrxai.checkpoint import load_checkpoint
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import store
from cxrxai.evaluation.evaluate import DEFAULT_REGIONS, RunOptions, evaluate_cases

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(labels=("sick", "well"), size=32), device=DEVICE)


@pytest.fixture()
def cases(tmp_path):
    rng = np.random.default_rng(0)
    made = []
    for i in range(3):
        path = tmp_path / f"x{i}.png"
        cv2.imwrite(str(path), (rng.random((40, 40)) * 255).astype(np.uint8))
        mask = np.zeros((40, 40), bool)
        mask[5:20, 5:25] = True
        annotations = [
            Annotation("mask", "sick", "reader", mask_loader=lambda m=mask: m),
            Annotation("box", "sick", "R1", box=(4, 4, 26, 21)),
            Annotation("box", "sick", "R2", box=(0, 0, 10, 10)),
        ]
        made.append(Case(f"toy/{i}", path, ["sick"], annotations, "toy", "test"))
    made.append(Case("toy/neg", tmp_path / "x0.png", ["well"], [], "toy", "test"))
    made.append(Case("toy/other", tmp_path / "x0.png", ["unknown finding"], [], "toy", "test"))
    return made


def test_rows_per_case_method_setting(bundle, cases, tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    summary = evaluate_cases(bundle, cases, ["gradcam", "lrp"], db)
    assert summary.units_done == 8 and summary.cases_without_target == ["toy/other"]
    assert db[store.LOCALISATION].count == 8 * len(DEFAULT_REGIONS)
    row = next(db[store.LOCALISATION].rows_where("case_id = 'toy/0' and mode = 'top-percent'"))
    assert row["target"] == "sick" and row["n_raters"] == 2 and row["unit"] == "px"
    assert row["iou"] is not None and row["box_iou_mean"] is not None
    # the negative case has an empty truth: IoU is NULL (NaN), never 0
    negative = list(db[store.LOCALISATION].rows_where("case_id = 'toy/neg'"))
    assert negative and all(r["iou"] is None and r["hit"] is None for r in negative)
    assert store.export_csv(db, store.LOCALISATION, tmp_path / "r.csv") == 8 * len(DEFAULT_REGIONS)


def test_resume_after_interruption(bundle, cases, tmp_path, monkeypatch):
    db = store.open_results(tmp_path / "r.sqlite")
    real_write = store.write_unit
    calls = {"n": 0}

    def failing_write(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user stops the run in the middle
        real_write(*args)

    monkeypatch.setattr(store, "write_unit", failing_write)
    with pytest.raises(KeyboardInterrupt):
        evaluate_cases(bundle, cases, ["gradcam", "lrp"], db)
    assert len(store.done_units(db, bundle.weights_sha256)) == 2
    monkeypatch.setattr(store, "write_unit", real_write)
    summary = evaluate_cases(bundle, cases, ["gradcam", "lrp"], db)
    assert summary.units_skipped == 2 and summary.units_done == 6
    assert db[store.LOCALISATION].count == 8 * len(DEFAULT_REGIONS)  # nothing twice


def test_method_settings_are_their_own_rows(bundle, cases, tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    evaluate_cases(bundle, cases, ["gradcam"], db)
    layer2 = RunOptions(method_params={"gradcam": {"layer": "layer2"}})
    summary = evaluate_cases(bundle, cases, ["gradcam"], db, layer2)
    # other settings are new work, not "already done", and stay apart from the defaults'
    assert summary.units_skipped == 0 and summary.units_done == 4
    methods = {r["method"] for r in db[store.LOCALISATION].rows}
    assert methods == {"gradcam", "gradcam(layer=layer2)"}
    default_is_default = RunOptions(method_params={"gradcam": {"layer": None}})
    assert evaluate_cases(bundle, cases, ["gradcam"], db, default_is_default).units_done == 0
    sql = "select avg(iou) from localisation where method = ? and mode = 'otsu'"
    ious = [db.execute(sql, [m]).fetchone()[0] for m in sorted(methods)]
    assert ious[0] != ious[1]
    no_feature_map = RunOptions(method_params={"gradcam": {"layer": "fc"}})
    with pytest.raises(CxrxaiError, match="Layer 'fc' has no"):
        evaluate_cases(bundle, cases, ["gradcam"], db, no_feature_map)


def test_superpixel_regions_for_lime_and_faithfulness(bundle, cases, tmp_path):
    db = store.open_results(tmp_path / "r.sqlite")
    settings = RunOptions(faithfulness=True, method_params={"lime": {"n_samples": 40}})
    evaluate_cases(bundle, cases[:1], ["lime"], db, settings)
    modes = {r["mode"] for r in db[store.LOCALISATION].rows}
    assert "top-superpixels" in modes
    (faith,) = list(db[store.FAITHFULNESS].rows)
    assert 0.0 <= faith["deletion_auc"] <= 1.0 and "blur21" in faith["pixel_importance"]


def test_real_cases_match_an_independent_iou(covid_root, tmp_path):
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.explain import get_explainer

    demo = load_checkpoint(DEMO_CHECKPOINT, device=DEVICE)
    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:2]
    db = store.open_results(tmp_path / "real.sqlite")
    evaluate_cases(demo, cases, ["gradcam"], db)
    for case in cases:
        row = next(
            db[store.LOCALISATION].rows_where(
                "case_id = ? and mode = 'top-percent' and value = 10", [case.case_id]
            )
        )
        image = case.load_image().pixels
        heat = get_explainer("gradcam").explain(demo, image, target="COVID-19")[0].numpy()
        region = heat >= np.sort(heat.ravel())[::-1][round(heat.size * 0.1) - 1]
        truth = case.findings()[0].load_mask()
        expected = (region & truth).sum() / (region | truth).sum()
        assert row["iou"] == pytest.approx(expected, abs=1e-6)
        assert row["correct"] in (0, 1) and 0.0 <= row["probability"] <= 1.0


def test_a_nan_map_names_its_case_and_keeps_stored_units(bundle, cases, tmp_path, monkeypatch):
    from cxrxai.errors import CxrxaiError
    from cxrxai.explain.lrp import LrpExplainer

    real = LrpExplainer.attribute

    def broken(self, bundle, batch, index, generator):
        out = real(self, bundle, batch, index, generator)
        out[0, 0] = float("nan")  # an explanation that failed numerically
        return out

    monkeypatch.setattr(LrpExplainer, "attribute", broken)
    db = store.open_results(tmp_path / "r.sqlite")
    with pytest.raises(CxrxaiError, match=r"Case 'toy/0', lrp for sick: .*NaN.*rerun without"):
        evaluate_cases(bundle, cases, ["gradcam", "lrp"], db)
    assert store.done_units(db, bundle.weights_sha256) == {("toy/0", "gradcam")}


def test_lungs_come_from_the_case_else_the_lung_model(covid_root, nih_root, tmp_path):
    """COVID-QU-Ex rows use its lung masks, NIH rows (no lung masks) the predicted ones;
    rows say which; --within-lungs works on both; without a model it needs a mask."""
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.datasets.nih import load_nih_bbox
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.lungs import LungSegmenter
    from cxrxai.metrics.regions import region

    demo = load_checkpoint(DEMO_CHECKPOINT, device=DEVICE)
    segmenter = LungSegmenter.load(device=DEVICE)
    covid = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:1]
    nih = load_nih_bbox(nih_root)[:1]
    relabelled = [Case(c.case_id, c.image_path, ["Normal"], c.annotations, c.dataset) for c in nih]
    db = store.open_results(tmp_path / "lungs.sqlite")
    settings = RunOptions(within_lungs=True, regions=(("top-percent", 10.0),))
    evaluate_cases(demo, covid + relabelled, ["gradcam"], db, settings, segmenter=segmenter)
    rows = {r["case_id"]: r for r in db[store.LOCALISATION].rows}
    assert rows[covid[0].case_id]["lung_source"] == "reference"
    assert rows[nih[0].case_id]["lung_source"] == "predicted"
    for row in rows.values():
        assert 0.0 <= row["lung_relevance"] <= 1.0
    # the region was confined to the predicted lungs
    from cxrxai.explain import get_explainer

    image = relabelled[0].load_image().pixels
    heat = get_explainer("gradcam").explain(demo, image, target="Normal")[0]
    lungs = torch.from_numpy(segmenter.mask(image))
    confined = region(heat.values.float(), "top-percent", 10.0, None, lungs)
    assert bool((confined & ~lungs).sum() == 0) and int(confined.sum()) > 0
    with pytest.raises(CxrxaiError, match="no lung mask and no lung-field model"):
        evaluate_cases(demo, relabelled, ["lrp"], db, settings)


def test_predicted_targets_score_any_dataset(nih_root, tmp_path):
    """NIH findings are no outputs of the 3-class demo model: by label nothing is scored,
    by prediction every case gets its shares of relevance (no truth: IoU NULL)."""
    from cxrxai.datasets.nih import load_nih_bbox
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.lungs import LungSegmenter

    demo = load_checkpoint(DEMO_CHECKPOINT, device=DEVICE)
    nih = load_nih_bbox(nih_root)[:2]
    db = store.open_results(tmp_path / "nih.sqlite")
    regions = (("top-percent", 10.0),)
    by_label = evaluate_cases(demo, nih, ["gradcam"], db, RunOptions(regions=regions))
    assert by_label.units_done == 0 and len(by_label.cases_without_target) == 2
    settings = RunOptions(regions=regions, targets="predicted")
    segmenter = LungSegmenter.load(device=DEVICE)
    summary = evaluate_cases(demo, nih, ["gradcam"], db, settings, segmenter=segmenter)
    assert summary.units_done == 2
    for row in db[store.LOCALISATION].rows:
        assert row["target"] in demo.labels and row["target"] == row["predicted"]
        assert row["iou"] is None and row["lung_source"] == "predicted"
        assert 0.0 <= row["lung_relevance"] <= 1.0 and 0.0 <= row["border_relevance"] <= 1.0
    with pytest.raises(CxrxaiError, match="targets must be one of"):
        evaluate_cases(demo, nih, ["gradcam"], db, RunOptions(targets="truth"))
