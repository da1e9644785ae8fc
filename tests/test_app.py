"""The dashboard pages, headless through Streamlit's AppTest, on the demo checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "heatmaps"))


def run_app(monkeypatch, **env: str) -> AppTest:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = AppTest.from_file(APP, default_timeout=180)
    return app.run()


def test_review_page_shows_a_real_case_and_prediction(monkeypatch, covid_root):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    assert not app.exception and not app.error
    cases = app.selectbox[0].options
    assert any("COVID-19" in c for c in cases) and any(c.startswith("nih-bbox/") for c in cases)
    assert app.metric[0].label == "Predicted"
    assert app.metric[0].value in ("COVID-19", "Non-COVID", "Normal")
    images = app.get("image")
    assert len(images) >= 2  # the case and its Grad-CAM panel
    nih = next(c for c in cases if c.startswith("nih-bbox/"))
    app.selectbox[0].select(nih).run()
    assert not app.exception and not app.error


def test_opens_on_sample_dicom_without_data(monkeypatch, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(tmp_path / "no-data-here"))
    assert not app.exception
    assert app.selectbox[0].options == ["pydicom-data/RG1_UNCR"]
    assert "CXRXAI_DATA" in app.info[0].value
    assert app.metric[0].value in ("COVID-19", "Non-COVID", "Normal")


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
    app.toggle[1].set_value(True).run()
    app.number_input[0].set_value(window[0]).run()
    app.number_input[1].set_value(window[1]).run()
    assert not app.exception and not app.error
    assert any("window 10000/4000" in m.value for m in app.markdown)


def test_second_method_panel_and_cache(monkeypatch, covid_root, tmp_path):
    app = run_app(monkeypatch, CXRXAI_DATA=str(covid_root.parent))
    app.multiselect[0].set_value(["gradcam", "lrp"]).run()
    assert not app.exception and not app.error
    assert len(app.get("image")) == 3  # the case, Grad-CAM and LRP panels
    assert len(list((tmp_path / "heatmaps").rglob("*.npz"))) == 2  # one cached map each
