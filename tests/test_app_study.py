"""The Study and Study admin pages through AppTest, on temporary study databases."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cxrxai.cli import main
from cxrxai.study import analysis, service
from cxrxai.study.db import connect
from cxrxai.study.findings import as_lines, findings
from cxrxai.study.mrmc import describe, reader_study

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PASSWORD = "admin password"


def shown(markdown: str) -> str:
    """What a reader sees of a message the page escaped (cxrxai.render.plain)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def widget(widgets, label: str):
    return next(w for w in widgets if w.label == label)


@pytest.fixture(autouse=True)
def private_files(monkeypatch, tmp_path):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "heatmaps"))
    monkeypatch.setenv("CXRXAI_STUDY_DB", str(tmp_path / "study.sqlite"))
    monkeypatch.setenv("CXRXAI_RESULTS", str(tmp_path / "no-results.sqlite"))


def page(path: str, **params: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    for key, value in params.items():
        app.query_params[key] = value
    app.run()
    app.switch_page(path).run()
    return app


def sign_in(app: AppTest, name: str, role: str = "radiologist") -> AppTest:
    """Fill the sign-in form: name and the reader profile."""
    widget(app.text_input, "Your name").input(name)
    widget(app.selectbox, "Your role").select(role)
    widget(app.number_input, "Years of experience reading chest X-rays").set_value(7)
    widget(app.radio, "Have you used AI tools in your work?").set_value("occasionally")
    return app.button[0].click().run()


def _confidence(app: AppTest, value: int) -> None:
    (field,) = [n for n in app.number_input if "confidence (0-100)" in n.label]
    field.set_value(value)


def _choose_password(app: AppTest, code: str) -> AppTest:
    widget(app.text_input, "Setup code").input(code)
    widget(app.text_input, "Admin password").input(PASSWORD)
    widget(app.text_input, "Repeat it").input(PASSWORD)
    return app.button[0].click().run()


def test_admin_first_start_login_and_create(monkeypatch, covid_root, tmp_path, capsys):
    """The first visitor cannot choose the admin password: it takes the one-time code the
    server printed in its log. Whoever sets it is signed in at once."""
    monkeypatch.setenv("CXRXAI_DATA", str(covid_root.parent))
    app = page("pages/study_admin.py")
    assert not app.exception
    logged = capsys.readouterr().err
    code = re.search(r"setup code \(valid 1 hour, once\): (\S+)", logged).group(1)
    assert (
        "Wrong or expired setup code"
        in _choose_password(app, "000000-000000-000000").error[0].value
    )
    assert not service.admin_password_set(connect(tmp_path / "study.sqlite"))
    _choose_password(app, code)
    assert not app.exception and not app.error
    assert widget(app.multiselect, "Methods")  # signed in, no second password prompt
    other = page("pages/study_admin.py")  # another browser: signs in with the password
    assert "setup code" not in capsys.readouterr().err  # no new code once a password is set
    widget(other.text_input, "Admin password").input("wrong password")
    other.button[0].click().run()
    assert "Wrong admin password" in other.error[0].value
    widget(other.text_input, "Admin password").input(PASSWORD)
    other.button[0].click().run()
    assert not other.exception and not other.error
    # a browser session keeps a sign-in token, never the password
    for signed_in in (app, other):
        kept = {key: signed_in.session_state[key] for key in signed_in.session_state}
        assert "admin_password" not in kept and PASSWORD not in repr(kept)
        assert isinstance(kept["admin_token"], service.AdminToken)
    widget(app.multiselect, "Methods").set_value(["gradcam", "lrp"])
    widget(app.toggle, "First read without explanations").set_value(True)
    widget(app.button, "Create").click().run()
    assert not app.exception and not app.error
    assert "Raters join with the code" in app.success[0].value
    db = connect(tmp_path / "study.sqlite")
    assert db["studies"].count == 1 and db["study_cases"].count > 0
    study = next(db["studies"].rows)
    code = study["code"]
    # the invitation is built from the server in use (it said :8501 on any port) ...
    monkeypatch.setattr(
        "dashboard.shared.st.get_option", lambda name: 8600 if name == "server.port" else None
    )
    app.run()
    assert app.code[0].value == f"http://localhost:8600/study?code={code}"
    monkeypatch.setenv("CXRXAI_PUBLIC_URL", "https://xai.hospital.example/")
    app.run()  # ... or from the configured public address (a reverse proxy's)
    assert app.code[0].value == f"https://xai.hospital.example/study?code={code}"
    assert study["first_read"] == 1
    for name, value, before in (("A", 2, False), ("B", 4, True)):  # each rates a first case
        rater = service.join(db, code, name)
        task = service.next_assignment(db, rater)
        service.record_first_read(db, rater, task.id, before, confidence=10 * value)
        scores = {label: {s: value for s in service.SCORES} for label in task.shown_as}
        service.submit(db, rater, task.id, scores, True, confidence=20 * value)
    app.run()
    assert not app.exception and not app.error
    # the MRMC paragraph is the library's, word for word (two cases: not computed, and why)
    mrmc = reader_study(analysis.ratings(db, study["id"]))
    assert mrmc["reason"] and describe(mrmc) in [c.value for c in app.caption]
    assert len(app.get("plotly_chart")) == 1
    assert any("Krippendorff" in m.label for m in app.metric)
    changed = next(m for m in app.metric if m.label == "Decisions changed by the explanations")
    assert changed.value == "50%"  # A changed to agree, B agreed throughout
    # the page and the CLI say the same findings, from one home (cxrxai.study.findings)
    rows = analysis.ratings(db, study["id"])
    said = findings(db, study, rows)
    assert len(said) >= 4
    capsys.readouterr()
    assert main(["study", "analyse", "--code", code, "--db", str(tmp_path / "study.sqlite")]) == 0
    printed = capsys.readouterr().out
    metrics = {m.label: m for m in app.metric}
    for finding in said:
        assert "\n".join(as_lines(finding)) in printed
        if finding.value is not None:
            assert metrics[finding.title].value == finding.value
            assert (metrics[finding.title].help or "") == finding.text
        else:
            assert finding.title in [h.value for h in app.subheader]
            assert finding.text in [c.value for c in app.caption]
    # a widget change redraws the findings without computing them again
    import cxrxai.study.findings as findings_module

    calls = []
    original = findings_module.findings
    monkeypatch.setattr(
        findings_module, "findings", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    widget(app.selectbox, "Score").set_value(service.SCORES[-1]).run()
    assert not app.exception and calls == []
    assert [b.label for b in app.get("download_button")] == [
        "Ratings (CSV)",
        "iMRMC input file",
        "Ratings (JSON)",
    ]
    service.set_admin_password(db, "a new admin password", replace=True)  # signs out all
    app.run()
    assert "sign in again" in app.warning[0].value and widget(app.text_input, "Admin password")


def _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, count: int):
    """A study database with its admin password, and the first ``count`` COVID-19 demo
    cases as study cases."""
    from cxrxai.demo import demo_cases

    monkeypatch.setenv("CXRXAI_DATA", str(covid_root.parent))
    db = connect(tmp_path / "study.sqlite")
    service.set_admin_password(db, PASSWORD)
    refs = [
        service.CaseRef(c.case_id, c.dataset, c.split, c.labels[0])
        for c in demo_cases(covid_root.parent)
        if c.labels == ["COVID-19"]
    ][:count]
    return db, refs


def prepared(db, code: str) -> str:
    """What the study's background worker does (``study prepare``), done here in-process
    (the tests' dashboards start no background process)."""
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.environment import DEMO_CHECKPOINT, data_root
    from cxrxai.study.prepare import prepare_study

    study = service.study_by_code(db, code)
    prepare_study(db, study["id"], load_checkpoint(DEMO_CHECKPOINT), data_root(), log=print)
    return code


def test_raters_wait_for_no_map(monkeypatch, covid_root, tmp_path):
    """A new study opens to raters once every map is computed; Study admin shows the
    progress; the worker resumes where it stopped and records what it computed."""
    from cxrxai.study.prepare import is_open, map_count

    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 2)
    code = service.create_study(db, PASSWORD, "s", refs, ["gradcam", "lrp"])
    study = service.study_by_code(db, code)
    assert map_count(db, study["id"]) == (0, 4) and not is_open(db, study["id"])
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    assert not app.exception
    assert any("being prepared (0 of 4 ready)" in shown(i.value) for i in app.info)
    assert not app.get("image")  # no panel, no case yet
    admin = page("pages/study_admin.py")
    widget(admin.text_input, "Admin password").input(PASSWORD)
    admin.button[0].click().run()
    assert any("0 of 4 maps ready" in shown(i.value) for i in admin.info)
    prepared(db, code)
    assert map_count(db, study["id"]) == (4, 4) and is_open(db, study["id"])
    rows = list(db["study_maps"].rows)
    assert {r["method"] for r in rows} == {"gradcam", "lrp"} and all(
        r["seconds"] >= 0 for r in rows
    )
    prepared(db, code)  # a restarted worker: nothing left to do, nothing duplicated
    assert db["study_maps"].count == 4
    app.run()
    assert not app.exception and len(app.get("image")) == 2  # the panels, at once


def test_rater_signs_in_rates_and_resumes(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 2)
    code = service.create_study(db, PASSWORD, "s", refs, ["gradcam", "lrp"], blinded=True)
    prepared(db, code)
    app = page("pages/study.py", code=code)  # the invitation link carries the code
    assert widget(app.text_input, "Study code").value == code
    app.button[0].click().run()  # no profile: refused, nothing stored
    assert "Enter your name" in shown(app.error[0].value) and db["raters"].count == 0
    widget(app.text_input, "Your name").input("<b>Dr Ada</b>")
    app.button[0].click().run()
    assert "Choose your role" in shown(app.error[0].value) and db["raters"].count == 0
    sign_in(app, "<b>Dr Ada</b>")
    assert not app.exception and not app.error
    assert next(db["raters"].rows)["role"] == "radiologist"
    token = app.query_params["rater"]
    assert {r.label for r in app.radio} >= {"Trust (A)", "Usefulness (B)"}  # blinded labels
    assert not any("gradcam" in str(m.value) for m in app.markdown)
    app.button[0].click().run()  # submit with nothing rated
    assert "whole number from 1 to 5" in app.error[0].value
    for radio in app.radio:
        radio.set_value(4 if radio.label != "Do you agree with the model's diagnosis?" else "yes")
    explains = next(m.value for m in app.markdown if "The panels explain" in m.value)
    assert "the model" in shown(explains) and "prediction" in shown(explains)
    app.button[0].click().run()  # no confidence given: refused
    assert "Give your confidence" in shown(app.error[0].value) and db["ratings"].count == 0
    _confidence(app, 80)
    time.sleep(1.2)  # reading the panels
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert "saved" in app.success[0].value
    assert db["ratings"].count == 2
    for row in db["ratings"].rows:  # time on task from the panels on screen to the submit
        assert row["started_at"] < row["submitted_at"] and row["seconds_on_case"] >= 1.2
        assert 0 <= row["wait_seconds"] < 60  # the maps' computation, kept apart
        assert row["explained_label"] in ("COVID-19", "Non-COVID", "Normal")
        assert row["confidence"] == 80
        # G5: the shown map's full settings and its compute time stay with the rating
        settings = json.loads(row["method_settings"])
        assert row["method"] != "lrp" or "composite" in settings
        assert row["map_seconds"] >= 0 and row["map_cached"] in (0, 1)
    resumed = page("pages/study.py", rater=token)  # a reload with the personal link
    assert not resumed.exception
    assert "Case 2 of 2" in str(resumed.get("progress")[0].proto)
    assert "<b>Dr Ada</b>" in [t.value for t in resumed.text]  # shown escaped, as text


def test_rater_reads_the_case_before_the_explanations(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    code = prepared(db, service.create_study(db, PASSWORD, "s", refs, ["gradcam"], first_read=True))
    app = page("pages/study.py", code=code)
    sign_in(app, "Ada", role="resident")
    assert not app.exception and not app.error
    question = "Before seeing any explanation: do you agree with the model's diagnosis?"
    assert [r.label for r in app.radio] == [question]  # no panel, nothing to rate yet
    app.button[0].click().run()  # continue without answering
    assert "yes or no" in app.error[0].value and db["first_reads"].count == 0
    widget(app.radio, question).set_value("no")
    _confidence(app, 30)
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert [r["agrees_with_model"] for r in db["first_reads"].rows] == [0]
    assert next(db["first_reads"].rows)["confidence"] == 30
    assert next(db["first_reads"].rows)["seconds"] >= 0  # the first read timed on its own
    assert {r.label for r in app.radio} >= {"Trust (A)", "Do you agree with the model's diagnosis?"}
    resumed = page("pages/study.py", rater=app.query_params["rater"])  # a reload
    assert question not in [r.label for r in resumed.radio]  # the first read is not asked again


def test_a_study_compares_variants_of_a_method(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    variants = ["gradcam", "gradcam(layer=blocks.6)"]
    code = prepared(db, service.create_study(db, PASSWORD, "layers", refs, variants, blinded=False))
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Lin")
    assert not app.exception and not app.error
    captions = [image.proto.imgs[0].caption for image in app.get("image")]
    assert len(captions) == 2 and captions[0] != captions[1]
    # the second panel's map was computed with its own layer
    layers = set()
    for path in (tmp_path / "heatmaps").rglob("*.npz"):
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
        if meta["method"] == "gradcam":
            layers.add(meta["params"]["layer"])
    assert layers == {None, "blocks.6"}
    # a variant the loaded model cannot take (another checkpoint's layer): a message
    code = service.create_study(
        db, PASSWORD, "x", refs, ["gradcam(layer=features.norm5)"], prepare=False
    )  # computed on the page, as studies made before preparation existed
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Lin")
    assert not app.exception
    assert "Layer 'features.norm5' is not in the model" in shown(app.error[0].value)


def test_a_practice_case_comes_first_and_says_so(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 2)
    code = service.create_study(db, PASSWORD, "p", refs[:1], ["gradcam"], practice=refs[1:])
    prepared(db, code)  # the practice case's maps are prepared too
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    assert not app.exception and not app.error
    assert "Practice case 1 of 1" in str(app.get("progress")[0].proto)
    assert any("A practice case" in shown(i.value) for i in app.info)
    for radio in app.radio:
        radio.set_value(4 if radio.label != "Do you agree with the model's diagnosis?" else "yes")
    _confidence(app, 60)
    app.button[0].click().run()
    assert "Ratings for practice case 1 of 1 saved." in shown(app.success[0].value)
    assert "Case 1 of 1" in str(app.get("progress")[0].proto)
    assert not any("A practice case" in shown(i.value) for i in app.info)
    assert db["ratings"].count_where("practice = 1") == 1


def test_readers_mark_the_finding_and_the_marks_become_a_manifest(
    monkeypatch, covid_root, tmp_path
):
    """A localising study: the page asks for marks and refuses ratings without one; marks
    stored with their IoUs export as a manifest that `evaluate` takes as the truth."""
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.datasets.manifest import load_manifest
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.evaluation.evaluate import RunOptions, evaluate_cases
    from cxrxai.evaluation.store import LOCALISATION, open_results
    from cxrxai.study.analysis import export

    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    code = prepared(db, service.create_study(db, PASSWORD, "m", refs, ["gradcam"], localise=True))
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    assert not app.exception
    assert any("drag a box on the image" in shown(m.value) for m in app.markdown)
    for radio in app.radio:
        radio.set_value(4 if radio.label != "Do you agree with the model's diagnosis?" else "yes")
    _confidence(app, 70)
    app.button[0].click().run()
    assert "Mark where the finding is" in shown(app.error[0].value) and db["ratings"].count == 0
    # the same submit with two boxes, as the page sends it once they are dragged
    rater = service.resume(db, app.query_params["rater"])
    task = service.next_assignment(db, rater)
    marks = service.Marks([(60.0, 60.0, 120.0, 180.0), (140.0, 60.0, 200.0, 180.0)], 0.3)
    service.submit(db, rater, task.id, {"A": dict.fromkeys(service.SCORES, 4)}, True,
                   confidence=70, marks=marks)  # fmt: skip
    written = export(db, service.study_by_code(db, code)["id"], tmp_path / "out")
    manifest = tmp_path / "out" / "reader_marks.csv"
    assert manifest in written
    (case,) = load_manifest(manifest, covid_root.parent)  # image paths under the data root
    assert case.case_id == refs[0].case_id and len(case.findings()) == 2
    assert {a.author for a in case.findings()} == {"R01"}
    results = open_results(tmp_path / "r.sqlite")
    settings = RunOptions(regions=(("top-percent", 10.0),))
    demo = load_checkpoint(DEMO_CHECKPOINT, device="cpu")
    assert evaluate_cases(demo, [case], ["gradcam"], results, settings).units_done == 1
    row = next(results[LOCALISATION].rows)
    assert 0.0 <= row["iou"] <= 1.0 and row["n_raters"] == 1  # scored against the marks


def test_a_sham_panel_shows_another_class_among_the_real_ones(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    code = prepared(
        db, service.create_study(db, PASSWORD, "s", refs, ["gradcam"], shams=["gradcam"])
    )
    targets = {r["method"]: r["target"] for r in db["study_maps"].rows}
    assert targets["sham:gradcam"] != targets["gradcam"]  # the map of another class
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    assert not app.exception and not app.error
    captions = sorted(image.proto.imgs[0].caption for image in app.get("image"))
    assert captions == ["Panel A", "Panel B"]  # nothing tells the sham apart
    assert not any("sham" in str(m.value).lower() for m in [*app.markdown, *app.caption])
    for radio in app.radio:
        radio.set_value(4 if radio.label != "Do you agree with the model's diagnosis?" else "yes")
    _confidence(app, 50)
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert {r["method"] for r in db["ratings"].rows} == {"gradcam", "sham:gradcam"}


def test_a_staged_reveal_shows_the_image_alone_first(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    code = prepared(db, service.create_study(db, PASSWORD, "st", refs, ["gradcam"], staged=True))
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    assert not app.exception and not app.error
    # stage one: the image, nothing of the model (no diagnosis, no panel)
    assert not any("Model's diagnosis" in str(m.value) for m in app.markdown)
    assert [image.proto.imgs[0].caption for image in app.get("image")] == ["The case"]
    widget(app.radio, "Your reading of this image").set_value("COVID-19")
    widget(app.number_input, "Your confidence (0-100) in this reading").set_value(65)
    app.button[0].click().run()
    assert not app.exception and not app.error
    # stage two: the model's label, still no explanation
    assert any("Model's diagnosis" in str(m.value) for m in app.markdown)
    assert not any("Panel" in image.proto.imgs[0].caption for image in app.get("image"))
    read = next(db["image_reads"].rows)
    assert (read["label"], read["confidence"]) == ("COVID-19", 65) and read["seconds"] >= 0


def test_a_crossover_reads_without_then_waits_for_the_washout(monkeypatch, covid_root, tmp_path):
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 2)
    code = prepared(db, service.create_study(db, PASSWORD, "x", refs, ["gradcam"], washout_days=7))
    app = page("pages/study.py", code=code)
    sign_in(app, "Dr Ada")
    for _ in range(2):  # session one: one case without explanations, one with
        assert not app.exception and not app.error
        unaided = any(b.label == "Submit this read" for b in app.button)
        if unaided:
            assert not app.get("image") or all(
                "Panel" not in image.proto.imgs[0].caption for image in app.get("image")
            )
            agree = "Before seeing any explanation: do you agree with the model's diagnosis?"
            widget(app.radio, agree).set_value("yes")
            next(n for n in app.number_input if "confidence" in n.label).set_value(30)
        else:
            for radio in app.radio:
                label = radio.label
                radio.set_value(4 if label != "Do you agree with the model's diagnosis?" else "yes")
            _confidence(app, 70)
        next(b for b in app.button if b.label in ("Submit this read", "Submit ratings")).click()
        app.run()
    assert not app.exception
    assert any("Your second session opens on" in shown(i.value) for i in app.info)
    assert db["first_reads"].count == 1 and db["ratings"].count == 1


def test_a_failed_preparation_is_shown_to_the_admin(monkeypatch, covid_root, tmp_path):
    """A variant the loaded model cannot take: the worker fails, and Study admin says so
    with the reason instead of "being prepared" for ever."""
    db, refs = _study_db_and_covid_cases(monkeypatch, covid_root, tmp_path, 1)
    monkeypatch.setenv("CXRXAI_BACKGROUND_MAPS", "1")  # this test's own worker
    monkeypatch.setenv("CXRXAI_STUDY_DB", str(tmp_path / "study.sqlite"))
    service.create_study(db, PASSWORD, "bad", refs, ["gradcam(layer=features.norm5)"])
    admin = page("pages/study_admin.py")
    widget(admin.text_input, "Admin password").input(PASSWORD)
    admin.button[0].click().run()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not admin.error:
        time.sleep(3)
        admin.run()
    assert admin.error, "the failed worker was never reported"
    message = shown(admin.error[0].value)
    assert "Preparing this study's explanations failed" in message
    assert "features.norm5" in message
