"""The dashboard's PACS page and the Review page's "Send to PACS", against Orthanc."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")
STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"


def test_search_open_on_review_and_send_back(orthanc, stored_rg1, tmp_path, monkeypatch):
    from dicomweb_client.api import DICOMwebClient

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    app = AppTest.from_file(APP, default_timeout=300).run()
    app.switch_page("pages/pacs.py").run()
    assert not app.exception
    app.text_input(key="pacs_url").input(orthanc.dicomweb)
    app.text_input(key="pacs_study").input(STUDY).run()
    next(b for b in app.button if b.label == "Search").click().run()
    assert not app.exception and not app.error
    rows = app.dataframe[0].value
    assert set(stored_rg1.values()) <= set(rows["instance"])
    assert "CompressedSamples" not in rows.to_csv()  # no patient identifier shown
    next(b for b in app.button if b.label == "Open its radiographs on Review").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    case = next(s for s in app.selectbox if s.label == "Case")
    assert set(stored_rg1.values()) <= set(case.options)
    assert case.value in stored_rg1.values()
    app.switch_page("pages/review.py")  # AppTest stays on the page it was told, not st's
    app.multiselect(key="methods").set_value(["gradcam"]).run()
    assert app.text_input(key="send-pacs-url").value == orthanc.dicomweb
    before = len(_sr_series(DICOMwebClient(orthanc.dicomweb)))
    app.button(key="send-pacs").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    assert any("Sent 3 DICOM objects" in s.value for s in app.success)
    assert len(_sr_series(DICOMwebClient(orthanc.dicomweb))) == before + 1


def test_a_bad_address_is_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    app = AppTest.from_file(APP, default_timeout=300).run()
    app.switch_page("pages/pacs.py").run()
    app.text_input(key="pacs_url").input("https://bob:hunter2@pacs/dicom-web").run()
    next(b for b in app.button if b.label == "Search").click().run()
    assert not app.exception
    (error,) = app.error
    assert "holds credentials" in error.value and "hunter2" not in error.value


def _sr_series(client) -> list:
    return client.search_for_series(STUDY, search_filters={"Modality": "SR"})
