"""The dashboard pages, headless through Streamlit's AppTest, on the demo checkpoint."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "heatmaps"))


def shown(markdown: str) -> str:
    """What a reader sees of a message the page escaped (cxrxai.render.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def widget(widgets, label: str):
    """The widget with this label (pages change order; labels are what users see)."""
    return next(w for w in widgets if w.label == label)


def run_app(monkeypatch, **env: str) -> AppTest:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = AppTest.from_file(APP, default_timeout=180)
    return app.run()


def test_review_page_shows_a_real_case_and_prediction(monkeypatch, covid_root):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    assert not app.exception and not app.error
    cases = widget(app.selectbox, "Case").options
    assert any("COVID-19" in c for c in cases) and len(cases) == 8
    # the NIH demo cases carry findings the 3-class model cannot score: not offered
    assert not any(c.startswith("nih-bbox/") for c in cases)
    assert app.metric[0].label == "Predicted"
    assert app.metric[0].value in ("COVID-19", "Non-COVID", "Normal")
    assert len(app.get("image")) == 3  # the case, its Grad-CAM and LRP panels
    widget(app.selectbox, "Case").select(cases[-1]).run()
    assert not app.exception and not app.error


def test_opens_on_sample_dicom_without_data(monkeypatch, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "no-data-here"))
    assert not app.exception
    assert widget(app.selectbox, "Case").options == ["pydicom-data/RG1_UNCR"]
    assert "CXRXAI_DATA" in app.info[0].value
    assert app.metric[0].value in ("COVID-19", "Non-COVID", "Normal")


def test_lung_fields_reference_or_predicted_and_the_lung_share(monkeypatch, covid_root, nih_root):
    """A COVID-QU-Ex case shows its own lung mask; an NIH case (none) the model's, said to
    be predicted; every panel says how much of its relevance lies inside the lungs."""
    from cxrxai.cases import Case
    from cxrxai.datasets.nih import load_nih_bbox

    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    captions = [shown(c.value) for c in app.caption]
    assert any(c.startswith("Lung fields (blue): QaTa-COV19") for c in captions)
    assert sum("inside the lungs" in c for c in captions) == 2  # Grad-CAM and LRP
    nih = load_nih_bbox(nih_root)[0]  # opened as an unlabelled image (an upload would be)
    app.session_state["extra_cases"] = [Case(nih.case_id, nih.image_path, [], [], "nih")]
    app.run()
    widget(app.selectbox, "Case").select(nih.case_id).run()
    assert not app.exception and not app.error
    captions = [shown(c.value) for c in app.caption]
    lungs = next(c for c in captions if c.startswith("Lung fields"))
    assert "predicted by lungs-unet-lite0-covidqu" in lungs and "not a radiologist" in lungs
    shares = [c for c in captions if c.startswith("Positive relevance:")]
    assert len(shares) == 2 and all("% inside the lungs" in c for c in shares)
    widget(app.toggle, "Only inside the lungs").set_value(True).run()
    assert not app.exception and not app.error


def test_a_photo_gets_the_out_of_distribution_warning(monkeypatch, tmp_path):
    """A photo opened as an X-ray: the warning stands beside the prediction; the sample
    chest DICOM has none."""
    import cv2
    import skimage.data

    from cxrxai.cases import Case

    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "no-data-here"))
    assert not app.exception and not any("frontal chest" in w.value for w in app.warning)
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), skimage.data.astronaut()[:, :, ::-1])
    app.session_state["extra_cases"] = [Case("upload/astronaut", photo, [], [], "upload")]
    app.run()
    widget(app.selectbox, "Case").select("upload/astronaut").run()
    assert not app.exception and not app.error
    warning = next(w.value for w in app.warning if "frontal chest" in w.value)
    assert "may not be a frontal chest radiograph" in warning and "unlike the training" in warning
    assert app.metric[0].label == "Predicted"  # the prediction is still shown, with the warning


def test_window_and_contrast_change_the_display_only(monkeypatch, tmp_path):
    """Moving a DICOM's window (or any image's brightness and contrast) changes what the
    reader sees, never the prediction or the maps: nothing is recomputed."""
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "no-data-here"))
    assert not app.exception

    def state():
        chart = next(c for c in app.get("plotly_chart") if "probability" in str(c.proto.spec))
        cached = sorted(p.name for p in (tmp_path / "heatmaps").rglob("*.npz"))
        return str(chart.proto.spec), cached, [str(i.proto) for i in app.get("image")]

    probability, cached, pictures = state()
    widget(app.selectbox, "Window level / width").select("manual").run()
    widget(app.number_input, "Width").set_value(200.0).run()
    widget(app.slider, "Contrast").set_value(2.0).run()
    assert not app.exception and not app.error
    after_probability, after_cached, after_pictures = state()
    assert after_probability == probability and after_cached == cached
    assert after_pictures != pictures  # what the reader sees did change


def test_bad_checkpoint_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    app = run_app(monkeypatch, CXRXAI_CHECKPOINT=str(tmp_path / "missing"))
    assert not app.exception
    assert "could not be loaded" in app.error[0].value and "not found" in app.error[0].value


def test_model_page_shows_the_card(monkeypatch, covid_root):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    app.switch_page("pages/model.py").run()
    assert not app.exception and not app.error
    assert app.title[0].value == "Model"
    labels = [m.label for m in app.metric]
    assert "accuracy" in labels and "macro auc" in labels


@pytest.mark.parametrize("window", [(10000.0, 4000.0)])
def test_manual_dicom_window(monkeypatch, tmp_path, window):
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "none"))
    widget(app.selectbox, "Window level / width").select("manual").run()
    widget(app.number_input, "Level (center)").set_value(window[0]).run()
    widget(app.number_input, "Width").set_value(window[1]).run()
    assert not app.exception and not app.error
    assert any("window 10000/4000" in m.value for m in app.markdown)


def test_methods_panels_and_cache(monkeypatch, covid_root, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    app.multiselect[0].set_value(["gradcam", "gradcam++", "lrp"]).run()
    assert not app.exception and not app.error
    assert len(app.get("image")) == 4  # the case and three panels
    assert len(list((tmp_path / "heatmaps").rglob("*.npz"))) == 3  # one cached map each
    downloads = [b for b in app.get("download_button") if b.label == "Download this panel (PNG)"]
    assert len(downloads) == 3
    (agreement,) = app.dataframe  # the three maps compared pair by pair
    assert list(agreement.value["methods"]) == [
        "gradcam / gradcam++",
        "gradcam / lrp",
        "gradcam++ / lrp",
    ]
    spearman = dict(zip(agreement.value["methods"], agreement.value["spearman"], strict=True))
    assert spearman["gradcam / gradcam++"] > 0.8  # two CAMs of one layer: nearly one map
    columns = len(app.columns)
    widget(app.slider, "Panels per row").set_value(2).run()  # two rows of two columns
    assert not app.exception and len(app.get("image")) == 4 and len(app.columns) == columns + 1


def _captions(app) -> list[str]:
    return [image.proto.imgs[0].caption for image in app.get("image")]


def test_method_settings_change_the_maps(monkeypatch, covid_root, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    assert app.selectbox(key="param-gradcam-layer").value == "bn2"  # the card's layer
    cached = set((tmp_path / "heatmaps").rglob("*.npz"))
    assert len(cached) == 2 and not any("(" in c for c in _captions(app)[1:])
    app.selectbox(key="param-gradcam-layer").set_value("blocks.5").run()
    app.selectbox(key="param-lrp-composite").set_value("epsilon-gamma-box").run()
    assert not app.exception and not app.error
    captions = _captions(app)
    assert captions[1].endswith("(layer=blocks.5)")
    assert captions[2].endswith("(composite=epsilon-gamma-box)")
    assert len(set((tmp_path / "heatmaps").rglob("*.npz")) - cached) == 2  # two new maps
    # back to the card's layer: the first map again, from the cache (None = card default)
    app.selectbox(key="param-gradcam-layer").set_value("bn2").run()
    assert len(list((tmp_path / "heatmaps").rglob("*.npz"))) == 4
    assert "(" not in _captions(app)[1]


def test_sanity_check_of_the_shown_maps(monkeypatch, covid_root):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    app.multiselect[0].set_value(["gradcam"]).run()
    app.button(key="sanity-run").click().run()
    assert not app.exception and not app.error
    (verdict,) = [d.value for d in app.dataframe if "verdict" in d.value.columns]
    assert list(verdict["method"]) == ["gradcam"]
    assert verdict["verdict"][0] == "passes: the map changes"
    charts = [str(chart.proto.spec) for chart in app.get("plotly_chart")]
    assert any("Spearman with the trained map" in spec for spec in charts)
    # other settings are another question: the stored result is not shown for them
    app.selectbox(key="param-gradcam-layer").set_value("blocks.5").run()
    assert not [d for d in app.dataframe if "verdict" in d.value.columns]


def _metric_values(app) -> list[str]:
    return [str(v) for table in app.table for v in table.value["value"]]


def test_metrics_follow_the_region_slider_without_recomputing(monkeypatch, covid_root, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    widget(app.selectbox, "Class").select("COVID-19").run()
    assert len(app.table) == 2  # a metrics table under each panel
    before = _metric_values(app)
    assert any(v != "n/a" for v in before)
    cached = sorted((tmp_path / "heatmaps").rglob("*.npz"))
    widget(app.slider, "Region value").set_value(30.0).run()
    assert not app.exception and not app.error
    assert _metric_values(app) != before
    assert sorted((tmp_path / "heatmaps").rglob("*.npz")) == cached  # no new explanation
    widget(app.selectbox, "Region mode").select("otsu").run()
    assert not app.exception and len(app.table) == 2
    (download,) = [b for b in app.get("download_button") if b.proto.label.endswith("(CSV)")]
    assert download.proto.label == "Download this case's metrics (CSV)"


def test_next_case_own_box_and_deletion_curve(monkeypatch, covid_root):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    widget(app.selectbox, "Class").select("Normal").run()
    first = widget(app.selectbox, "Case").value
    assert len(app.table) == 0  # a Normal case has no infection annotation
    widget(app.button, "Next ▶").click().run()
    assert widget(app.selectbox, "Case").value != first
    app.button(key="curve-gradcam").click().run()
    assert not app.exception and not app.error
    assert any("AUC deletion" in str(chart.proto.spec) for chart in app.get("plotly_chart"))


def test_boxes_drawn_with_the_mouse_are_the_truth_until_cleared(monkeypatch, covid_root):
    """Two boxes dragged on a Normal case's image (what the browser sends back as the
    plotly selection) become the truth the panels are scored against; one click clears
    them; the next case starts with none."""
    from cxrxai.demo import demo_cases

    normal = [c.case_id for c in demo_cases(covid_root.parent) if c.labels == ["Normal"]]
    boxes = [{"x": [40, 120], "y": [60, 160]}, {"x": [150, 220], "y": [70, 170]}]
    app = AppTest.from_file(APP, default_timeout=180)
    monkeypatch.setenv("CXRXAI_DATA", str(covid_root.parent))
    app.session_state[f"draw-0-{normal[0]}"] = {"selection": {"box": boxes}}
    app.session_state["case_id"] = normal[0]
    app.run()
    assert not app.exception and len(app.table) == 0  # drawn, not yet used
    assert any("2 box(es) drawn" in c.value for c in app.caption)
    widget(app.toggle, "Score the explanations against my boxes").set_value(True).run()
    assert not app.exception and len(app.table) == 2  # both panels scored against them
    widget(app.button, "Clear my boxes").click().run()
    assert not app.exception and len(app.table) == 0
    assert any(c.value.startswith("Drag a box on the image") for c in app.caption)


def test_cases_page_empty_state(monkeypatch, tmp_path):
    monkeypatch.setattr("cxrxai.environment.demo_results_path", lambda: tmp_path / "no-demo.sqlite")
    app = run_app(monkeypatch, CXRXAI_RESULTS=str(tmp_path / "none.sqlite"))
    app.switch_page("pages/cases.py").run()
    assert not app.exception
    assert "No evaluation results" in app.info[0].value
    assert "python -m cxrxai evaluate" in app.info[0].value


def test_cases_page_warns_of_rows_from_an_older_metrics_definition(monkeypatch, tmp_path):
    from cxrxai.evaluation import store

    path = tmp_path / "old.sqlite"
    db = store.open_results(path)
    row = {k: "x" for k in ("checkpoint_sha256", "case_id", "method", "mode", "dataset")}
    row |= {"target": "sick", "case_labels": "sick", "predicted": "sick", "correct": 1}
    row |= {"probability": 0.9, "value": 10.0, "iou": 0.2, "mode": "top-percent"}
    db[store.LOCALISATION].insert(row)  # no metrics_version: written before it existed
    app = run_app(monkeypatch, CXRXAI_RESULTS=str(path))
    app.switch_page("pages/cases.py").run()
    assert not app.exception
    assert "1 row(s) were computed by an older definition" in app.warning[0].value


def test_cases_page_draws_a_large_evaluation_in_part(monkeypatch, tmp_path):
    """A whole split: the table shows the first TABLE_ROWS rows, the box plot a random
    PLOT_POINTS, the CSV button offers every row (both limits made small here)."""
    from cxrxai.evaluation import browse, store

    monkeypatch.setattr(browse, "TABLE_ROWS", 10)
    monkeypatch.setattr(browse, "PLOT_POINTS", 12)
    path = tmp_path / "big.sqlite"
    db = store.open_results(path)
    for i in range(30):
        row = {"checkpoint_sha256": "x", "case_id": f"toy/{i:02d}", "method": "gradcam"}
        row |= {"target": "sick", "case_labels": "sick", "predicted": "sick", "correct": 1}
        row |= {"probability": 0.9, "mode": "top-percent", "value": 10.0, "iou": i / 30}
        row |= {"dataset": "toy", "split": "test"}
        store.write_unit(db, [row], [])
    app = run_app(monkeypatch, CXRXAI_RESULTS=str(path))
    app.switch_page("pages/cases.py").run()
    assert not app.exception and not app.error
    assert len(app.dataframe[0].value) == 10
    captions = " ".join(c.value for c in app.caption)
    assert "30 rows" in captions and "the table shows the first 10" in captions
    assert "random 12 of the 30 rows" in captions
    assert "30 rows" in app.get("download_button")[0].proto.label


def test_cases_page_opens_the_demo_evaluation_until_there_is_one(monkeypatch, covid_root, tmp_path):
    from cxrxai.demo import evaluate_demo

    demo_db = tmp_path / "demo.sqlite"
    monkeypatch.setattr("cxrxai.environment.demo_results_path", lambda: demo_db)
    evaluate_demo(("gradcam", "lrp"), covid_root.parent, demo_db)
    app = run_app(
        monkeypatch, CXRXAI_DATA=str(covid_root.parent), CXRXAI_RESULTS=str(tmp_path / "x.sqlite")
    )
    app.switch_page("pages/cases.py").run()
    assert not app.exception and not app.error
    assert "Showing the demo evaluation" in app.info[0].value
    assert len(app.dataframe[0].value) == 16  # the 8 COVID-QU-Ex demo cases x 2 methods
    # the two methods compared on the same (COVID-19: 4) cases
    comparison = app.dataframe[1].value
    assert list(comparison["methods"]) == ["gradcam - lrp"] and list(comparison["n"]) == [4]
    app.selectbox(key="compare-metric").set_value("mean_distance").run()
    assert not app.exception and "mean difference (mean_distance)" in app.dataframe[1].value


def test_cases_page_table_plots_and_open_in_review(monkeypatch, covid_root, tmp_path):
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.evaluation.evaluate import evaluate_cases
    from cxrxai.evaluation.store import open_results

    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]]
    picked = cases[-2:]  # not among the demo cases
    db_path = tmp_path / "results.sqlite"
    evaluate_cases(load_checkpoint(DEMO_CHECKPOINT), picked, ["gradcam"], open_results(db_path))
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent), CXRXAI_RESULTS=str(db_path))
    app.switch_page("pages/cases.py").run()
    assert not app.exception and not app.error
    assert len(app.dataframe[0].value) == 2
    assert len(app.get("plotly_chart")) == 2  # box plot and IoU-versus-p
    widget(app.radio, "Prediction").set_value("incorrect").run()
    assert not app.exception
    widget(app.radio, "Prediction").set_value("all").run()
    shares = [row for row in app.dataframe[0].value["lung_relevance"]]
    flagged = sum(share < 0.5 for share in shares)
    widget(app.radio, "Shortcut flag").set_value("flagged").run()
    assert not app.exception and len(app.dataframe[0].value) == flagged
    widget(app.radio, "Shortcut flag").set_value("not flagged").run()
    assert len(app.dataframe[0].value) == 2 - flagged
    widget(app.radio, "Shortcut flag").set_value("all").run()
    app.button(key="pick-0").click().run()
    assert not app.exception and not app.error
    assert widget(app.selectbox, "Case").value in {c.case_id for c in picked}


def test_a_selected_row_opens_in_review_with_its_method_settings_and_label(
    monkeypatch, covid_root, tmp_path
):
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.evaluation import store
    from cxrxai.evaluation.evaluate import RunOptions, evaluate_cases
    from cxrxai.evaluation.store import open_results

    case = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][-1]
    db_path = tmp_path / "results.sqlite"
    layer = RunOptions(method_params={"gradcam": {"layer": "blocks.5"}})
    bundle = load_checkpoint(DEMO_CHECKPOINT)
    evaluate_cases(bundle, [case], ["gradcam"], open_results(db_path), layer)
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent), CXRXAI_RESULTS=str(db_path))
    app.switch_page("pages/cases.py").run()
    assert not [b for b in app.button if b.key == "open-selected"]  # nothing selected yet
    app.session_state["cases-table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    app.run()
    button = app.button(key="open-selected")
    assert button.label == f"Open {case.case_id} in Review (gradcam(layer=blocks.5) for COVID-19)"
    button.click().run()
    assert not app.exception and not app.error
    assert widget(app.selectbox, "Case").value == case.case_id
    assert app.multiselect[0].value == ["gradcam"]
    assert app.selectbox(key="param-gradcam-layer").value == "blocks.5"
    assert widget(app.selectbox, "Explain the label").value == "COVID-19"
    assert _captions(app)[1].endswith("(layer=blocks.5)")
    # a selection left from a longer table is ignored, not an IndexError
    app.switch_page("pages/cases.py").run()
    app.session_state["cases-table"] = {"selection": {"rows": [5], "columns": [], "cells": []}}
    app.run()
    assert not app.exception and not [b for b in app.button if b.key == "open-selected"]
    # a row of a method this version cannot read is a message, not a traceback
    results = open_results(db_path)
    results.execute("update localisation set method = 'gradcam(depth=3)'")
    store.count_write(results)  # a tool writing around the store says so (summaries.py)
    results.conn.commit()
    app.session_state["cases-table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    app.run()
    app.button(key="open-selected").click().run()
    assert not app.exception
    assert "Cannot read the setting 'depth=3'" in shown(app.error[0].value)
    assert not app.warning  # no "default value and Session State API" warning


def test_a_variant_with_a_value_outside_the_suggestions_opens_as_it_is(monkeypatch, covid_root):
    from cxrxai.datasets.covidqu import load_covid_qu_ex

    case = next(c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"])
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    app.session_state["extra_cases"] = [case]
    app.session_state["case_id"] = case.case_id
    app.session_state["methods"] = ["shap"]
    app.session_state["param-shap-masker"] = "blur(5,5)"  # what open_in_review sets
    app.session_state["param-shap-n_samples"] = 50
    app.run()
    assert not app.exception and not app.error
    assert app.selectbox(key="param-shap-masker").value == "blur(5,5)"
    assert _captions(app)[1].endswith("(n_samples=50, masker=blur(5,5))")


def test_model_page_layers_and_loading_another_checkpoint(monkeypatch, tmp_path, tiny_checkpoint):
    """Checkpoints are chosen among the configured folders (models/, $CXRXAI_MODELS),
    never typed as a server path; a broken one is a message."""
    folder = tiny_checkpoint(labels=("x", "y"), size=32)
    multilabel = tiny_checkpoint(labels=("x", "y"), task="multilabel", thresholds={"x": 0.3})
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "model_card.json").write_text("{")
    models = os.pathsep.join([str(folder.parent), str(tmp_path / "models")])
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "none"), CXRXAI_MODELS=models)
    app.switch_page("pages/model.py").run()
    layers = app.dataframe[-1].value
    assert {"conv_head", "bn2", "blocks.6"} <= set(layers["layer"])  # the demo's, in order
    assert list(layers["card default"]).count("✓") == 1
    assert not app.text_input  # no free path
    offered = widget(app.selectbox, "Checkpoint").options
    assert {str(folder), str(multilabel), str(broken.resolve())} <= set(offered)
    assert all(Path(option, "model_card.json").is_file() for option in offered)
    widget(app.selectbox, "Checkpoint").select(str(broken.resolve())).run()
    widget(app.button, "Load").click().run()
    assert app.error and not app.exception
    widget(app.selectbox, "Checkpoint").select(str(folder)).run()
    widget(app.button, "Load").click().run()
    assert not app.exception and "Loaded" in app.success[0].value
    assert "x, y" in " ".join(m.value for m in app.markdown)
    assert not any("Operating thresholds" in m.value for m in app.markdown)  # multi-class
    app.run()  # the choice now starts from the loaded checkpoint (a new widget)
    widget(app.selectbox, "Checkpoint").select(str(multilabel)).run()
    widget(app.button, "Load").click().run()
    assert any("x 0.30, y 0.50" in m.value for m in app.markdown)


def test_text_from_a_card_is_shown_as_text(monkeypatch, tmp_path, tiny_checkpoint):
    """A card's name, labels and notes are shown as typed: an image link in them would
    make every visitor's browser fetch from an outside server."""
    import json
    import shutil

    folder = tmp_path / "hostile"
    shutil.copytree(tiny_checkpoint(labels=("x", "y")), folder)
    card = json.loads((folder / "model_card.json").read_text())
    fetch = "![t](http://evil.example/pixel.png)"
    card |= {"name": f"Model {fetch}", "notes": f"**bold** {fetch} :red[alert] $x^2$"}
    card["labels"] = [f"x {fetch}", "y"]
    (folder / "model_card.json").write_text(json.dumps(card))
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "none"), CXRXAI_CHECKPOINT=str(folder))
    app.switch_page("pages/model.py").run()
    assert not app.exception
    shown = [e.value for e in (*app.markdown, *app.caption, *app.subheader)]
    texts = [t for t in shown if "evil" in t]
    assert len(texts) >= 3  # name, labels, notes
    for text in texts:
        assert "![" not in text and "](" not in text and "\\!\\[t\\]\\(http\\:" in text


@pytest.mark.parametrize(
    ("thresholds", "positive"),
    [({"a": 0.0, "b": 1.0, "c": 0.0}, {"a", "c"}), ({"a": 1.0, "b": 1.0, "c": 1.0}, set())],
)
def test_multilabel_model_shows_labels_above_their_thresholds(
    monkeypatch, tmp_path, tiny_checkpoint, thresholds, positive
):
    folder = tiny_checkpoint(labels=("a", "b", "c"), task="multilabel", thresholds=thresholds)
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "none"), CXRXAI_CHECKPOINT=str(folder))
    assert not app.exception and not app.error
    shown = app.metric[0].value
    if positive:
        assert set(shown.split(", ")) == positive  # not just the most probable label
        assert widget(app.selectbox, "Explain the label").value in positive
    else:
        assert shown == "no finding above its operating threshold"
    (chart,) = [c for c in app.get("plotly_chart") if "operating threshold" in str(c.proto.spec)]
    spec = json.loads(chart.proto.spec)
    # one bar per label, and each label's own threshold marked on its bar
    (bars,) = [trace for trace in spec["data"] if trace.get("type") == "bar"]
    (ticks,) = [trace for trace in spec["data"] if trace.get("name") == "operating threshold"]
    assert sorted(bars["y"]) == ["a", "b", "c"] and ticks["y"] == bars["y"]
    assert dict(zip(ticks["y"], ticks["x"], strict=True)) == thresholds


def test_the_address_holds_the_case_and_opens_it_again(monkeypatch, covid_root):
    """What the page shows goes into the address; an address opened later (a bookmark,
    a shared link) shows that case, label and method variant; a broken one says what was
    left out."""
    from cxrxai.demo import demo_cases

    monkeypatch.setenv("CXRXAI_DATA", str(covid_root.parent))
    app = AppTest.from_file(APP, default_timeout=180).run()
    assert app.query_params["case"] == widget(app.selectbox, "Case").value
    assert app.query_params["label"] == widget(app.selectbox, "Explain the label").value
    assert app.query_params["method"] == ["gradcam", "lrp"]
    normal = next(c.case_id for c in demo_cases(covid_root.parent) if c.labels == ["Normal"])
    shared = AppTest.from_file(APP, default_timeout=180)
    shared.query_params["case"] = normal
    shared.query_params["label"] = "COVID-19"
    shared.query_params["method"] = ["gradcam(layer=blocks.5)", "nosuch"]
    shared.run()
    assert not shared.exception
    assert widget(shared.selectbox, "Case").value == normal
    assert widget(shared.selectbox, "Explain the label").value == "COVID-19"
    assert widget(shared.multiselect, "Explanations").value == ["gradcam"]
    assert shared.selectbox(key="param-gradcam-layer").value == "blocks.5"
    assert any(
        "method 'nosuch' from the address was left out" in shown(w.value) for w in shared.warning
    )
    broken = AppTest.from_file(APP, default_timeout=180)
    broken.query_params["case"] = "../../etc/passwd"
    broken.run()
    assert not broken.exception
    assert any("is not among the cases here" in shown(w.value) for w in broken.warning)
