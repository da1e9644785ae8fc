"""Trust study: admin, set-up, counterbalancing, validation, idempotence, migrations.

Every test uses a temporary database, never the user's.
"""

from __future__ import annotations

import collections
import io
import json
import sqlite3
import time

import pytest

from cxrxai.errors import CxrxaiError
from cxrxai.study import service
from cxrxai.study.db import connect, migrations
from cxrxai.study.protocol import rater_plan
from cxrxai.study.service import CaseRef, StudyError

PASSWORD = "admin password"  # the db fixture's (conftest.py)
METHODS = ["gradcam", "lime", "shap", "lrp"]


def make_cases(n: int = 8) -> list[CaseRef]:
    return [CaseRef(f"case-{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(n)]


@pytest.fixture()
def code(db):
    return service.create_study(db, PASSWORD, "pilot", make_cases(), METHODS, seed=3)


def full_scores(assignment, value: int = 4) -> dict:
    return {label: {s: value for s in service.SCORES} for label in assignment.shown_as}


def test_admin_password_is_salted_and_never_stored_plainly(db, tmp_path):
    with pytest.raises(StudyError, match="already set"):
        service.set_admin_password(db, "another password")
    with pytest.raises(StudyError, match="Wrong admin password"):
        service.check_admin(db, "wrong one")
    service.check_admin(db, PASSWORD)
    stored = next(db["settings"].rows_where("key = 'admin_password'"))["value"]
    assert stored.startswith("pbkdf2_sha256$") and PASSWORD not in stored
    db.conn.commit()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("study.sqlite*"))
    assert PASSWORD.encode() not in raw
    with pytest.raises(StudyError, match="Wrong admin password"):
        service.create_study(db, "nope", "x", make_cases(), METHODS)


def test_first_password_needs_the_setup_code_and_it_works_once(tmp_path):
    db = connect(tmp_path / "fresh.sqlite")
    code = service.new_setup_code(db)
    assert code and len(code.replace("-", "")) == 18  # 72 bits, grouped for typing
    assert service.new_setup_code(db) is None  # no new code while this one is valid
    with pytest.raises(StudyError, match="Wrong or expired setup code"):
        service.set_admin_password_with_code(db, "ABCDEF-ABCDEF-ABCDEF", PASSWORD, "s1")
    assert not service.admin_password_set(db)
    service.set_admin_password_with_code(db, code.lower(), PASSWORD, "s1")
    service.check_admin(db, PASSWORD)
    with pytest.raises(StudyError, match="already set"):
        service.set_admin_password_with_code(db, code, "another password", "s2")
    assert service.new_setup_code(db) is None
    actions = [r["action"] for r in db["audit"].rows]
    assert actions == ["new_setup_code", "setup_code_failed", "set_admin_password"]
    assert code not in str(list(db["settings"].rows))  # only its hash is stored


def test_an_expired_setup_code_is_refused(tmp_path, monkeypatch):
    db = connect(tmp_path / "fresh.sqlite")
    code = service.new_setup_code(db)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3601)
    with pytest.raises(StudyError, match="expired"):
        service.set_admin_password_with_code(db, code, PASSWORD, "s1")
    assert service.new_setup_code(db) not in (None, code)  # a new one after expiry


def test_failed_sign_ins_are_audited_and_throttled(db):
    for _ in range(service.SIGN_IN_LIMIT):
        with pytest.raises(StudyError, match="Wrong admin password"):
            service.check_admin(db, "guess", session="attacker")
    with pytest.raises(StudyError, match=r"Too many failed attempts; wait \d+ s"):
        service.check_admin(db, PASSWORD, session="attacker")  # even the right one, for now
    service.check_admin(db, PASSWORD, session="organiser")  # another session is not locked
    for i in range(service.SIGN_IN_LIMIT_ALL - service.SIGN_IN_LIMIT):
        with pytest.raises(StudyError, match="Wrong admin password"):
            service.check_admin(db, "guess", session=f"new session {i}")
    with pytest.raises(StudyError, match="Too many failed attempts"):
        service.check_admin(db, "guess", session="yet another session")  # overall limit
    failed = db["audit"].count_where("action = 'admin_sign_in_failed'")
    assert failed == service.SIGN_IN_LIMIT_ALL


def test_the_password_is_set_and_reset_from_the_command_line(tmp_path, monkeypatch, capsys):
    from cxrxai.cli import main

    path = tmp_path / "cli.sqlite"
    monkeypatch.setattr("sys.stdin", io.StringIO("first password\n"))
    assert main(["study", "set-password", "--db", str(path)]) == 0
    assert "admin password set" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("forgotten? new one\n"))
    assert main(["study", "set-password", "--db", str(path)]) == 0
    assert "admin password reset" in capsys.readouterr().out
    db = connect(path)
    service.check_admin(db, "forgotten? new one")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["study", "set-password", "--db", str(path)]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    actions = [r["action"] for r in db["audit"].rows]
    assert actions == ["set_admin_password", "reset_admin_password"]


def test_counterbalanced_and_reproducible():
    counts = collections.Counter()
    for rater in range(4):
        plan = rater_plan(8, METHODS, seed=3, rater_index=rater)
        assert sorted(case for case, _ in plan) == list(range(8))  # every case once
        for _, order in plan:
            counts.update((m, position) for position, m in enumerate(order))
        assert plan == rater_plan(8, METHODS, seed=3, rater_index=rater)
    # each method equally often in each position
    assert set(counts.values()) == {8}
    assert rater_plan(8, METHODS, 3, 0) != rater_plan(8, METHODS, 4, 0)


def test_rating_flow_blinded_and_resume(db, code):
    rater = service.join(db, code, "Dr Ada")
    first = service.next_assignment(db, rater)
    assert first.total == 8 and first.shown_as == ["A", "B", "C", "D"] and first.blinded
    assert sorted(first.methods) == sorted(METHODS)
    stored = service.submit(
        db, rater, first.id, full_scores(first), True, "fine", 12.5, {"opacity": 0.4}
    )
    assert stored == 4
    # a double click / resubmit after reload stores nothing more
    assert service.submit(db, rater, first.id, full_scores(first, 2), True) == 0
    assert db["ratings"].count == 4
    assert {r["trust"] for r in db["ratings"].rows} == {4}  # the first submission kept
    again = service.resume(db, rater.token)  # a browser reload with the personal link
    assert service.next_assignment(db, again).position == 1
    rows = list(db["ratings"].rows)
    assert {r["method"] for r in rows} == set(METHODS) and {r["shown_as"] for r in rows} == set(
        "ABCD"
    )
    assert service.progress(db, rater.study_id) == [{"rater": "R01", "done": 1, "total": 8}]


def test_nobody_rates_as_someone_else(db, code):
    ada = service.join(db, code, "Dr Ada")
    with pytest.raises(StudyError, match="already taken"):
        service.join(db, code, "Dr  Ada")  # same name, other spacing
    bob = service.join(db, code, "Dr Bob")
    ada_task = service.next_assignment(db, ada)
    with pytest.raises(StudyError, match="not yours"):
        service.submit(db, bob, ada_task.id, full_scores(ada_task), None)
    borrowed = service.Rater(ada.id, ada.study_id, ada.name, token=bob.token)
    with pytest.raises(StudyError, match="not yours"):
        service.submit(db, borrowed, ada_task.id, full_scores(ada_task), None)
    forged = service.Rater(ada.id, ada.study_id, ada.name, token="guessed")
    with pytest.raises(StudyError, match="not valid"):
        service.submit(db, forged, ada_task.id, full_scores(ada_task), None)
    with pytest.raises(StudyError, match="not yours"):
        service.submit(db, ada, 99999, full_scores(ada_task), None)
    with pytest.raises(StudyError, match="No study has this code"):
        service.join(db, "ZZZZZZ", "Eve")


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ({"trust": 6, "localisation": 3, "usefulness": 3}, "from 1 to 5"),
        ({"trust": 0, "localisation": 3, "usefulness": 3}, "from 1 to 5"),
        ({"trust": 2.5, "localisation": 3, "usefulness": 3}, "from 1 to 5"),
        ({"trust": "5", "localisation": 3, "usefulness": 3}, "from 1 to 5"),
        ({"trust": True, "localisation": 3, "usefulness": 3}, "from 1 to 5"),
        ({"localisation": 3, "usefulness": 3}, "from 1 to 5"),  # missing field
    ],
)
def test_bad_scores_are_refused(db, code, scores, message):
    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    bad = full_scores(task)
    bad["A"] = scores
    with pytest.raises(StudyError, match=message):
        service.submit(db, rater, task.id, bad, True)
    partial = full_scores(task)
    del partial["B"]
    with pytest.raises(StudyError, match="Rate every panel"):
        service.submit(db, rater, task.id, partial, True)
    assert db["ratings"].count == 0  # nothing half-stored


def test_long_and_hostile_text(db, code):
    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    with pytest.raises(StudyError, match="limited to 5000"):
        service.submit(db, rater, task.id, full_scores(task), True, "x" * 100_000)
    hostile = "<script>alert(1)</script>'); DROP TABLE ratings; --"
    service.submit(db, rater, task.id, full_scores(task), True, hostile)
    assert {r["comment"] for r in db["ratings"].rows} == {hostile}  # stored as data
    assert "ratings" in db.table_names()
    with pytest.raises(StudyError, match="name"):
        service.join(db, code, "n" * 500)
    evil = service.join(db, code, "<b>Robert'); DROP TABLE raters;--</b>")
    assert service.resume(db, evil.token).name.startswith("<b>Robert")


def test_audit_log_is_append_only(db, code):
    actions = [r["action"] for r in db["audit"].rows]
    assert actions == ["set_admin_password", "create_study"]
    assert all(PASSWORD not in r["detail"] for r in db["audit"].rows)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("update audit set actor = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("delete from audit")


def test_older_schema_is_migrated_in_place(tmp_path):
    import sqlite_utils

    path = tmp_path / "old.sqlite"
    old = sqlite_utils.Database(path)
    migrations.apply(old, stop_before="m002_pseudonyms")  # a database from version 1
    old["studies"].insert(
        {
            "id": 1,
            "code": "ABC123",
            "name": "old",
            "mode": "open",
            "methods": json.dumps(["gradcam"]),
            "seed": 0,
            "instructions": "",
            "created_at": "2026-01-01",
        }
    )
    old["raters"].insert_all(
        [
            {"id": 1, "study_id": 1, "name": "A", "token_hash": "x", "created_at": "t"},
            {"id": 2, "study_id": 1, "name": "B", "token_hash": "y", "created_at": "t"},
            {"id": 3, "study_id": 1, "name": "b", "token_hash": "z", "created_at": "t"},
        ]
    )
    old.conn.close()
    db = connect(path)
    assert [m.name for m in migrations.applied(db)] == [
        "m001_initial",
        "m002_pseudonyms",
        "m003_first_reads",
        "m004_name_keys",
        "m005_timing_and_explained_label",
        "m006_reader_profile_and_confidence",
        "m007_model_correctness",
        "m008_map_provenance",
        "m009_prepared_maps",
        "m010_practice_cases",
        "m011_reader_marks",
        "m012_staged_reveal",
        "m013_crossover",
    ]
    assert [(r["name"], r["pseudonym"], r["name_key"]) for r in db["raters"].rows] == [
        ("A", "R01", "a"),
        ("B", "R02", "b"),
        ("b", "R03", "b#3"),  # "B" and "b" had both signed in: both keep their accounts
    ]
    assert db["studies"].get(1)["first_read"] == 0  # an existing study keeps its protocol
    assert db["studies"].get(1)["explain"] == "reference"  # and the label it explained
    assert db["studies"].get(1)["prepare"] == 0  # and computes its maps on the page
    assert connect(path)["raters"].count == 3  # rerunning is safe


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database " * 100)
    with pytest.raises(CxrxaiError, match="could not be opened"):
        connect(path)


def test_first_read_comes_before_the_ratings_and_is_never_replaced(db):
    code = service.create_study(
        db, PASSWORD, "decisions", make_cases(2), ["gradcam", "lrp"], first_read=True
    )
    rater = service.join(db, code, "Ada")
    task = service.next_assignment(db, rater)
    assert service.needs_first_read(db, task)
    with pytest.raises(StudyError, match="first read"):
        service.submit(db, rater, task.id, full_scores(task), True)
    with pytest.raises(StudyError, match="yes or no"):
        service.record_first_read(db, rater, task.id, None)  # type: ignore[arg-type]
    other = service.join(db, code, "Bob")
    with pytest.raises(StudyError, match="not yours"):
        service.record_first_read(db, other, task.id, True)
    assert service.record_first_read(db, rater, task.id, False) is True
    assert service.record_first_read(db, rater, task.id, True) is False  # kept: the first
    assert next(db["first_reads"].rows)["agrees_with_model"] == 0
    assert not service.needs_first_read(db, task)
    assert service.submit(db, rater, task.id, full_scores(task), True) == 2
    # a study without a first read never asks for one
    plain = service.join(db, service.create_study(db, PASSWORD, "p", make_cases(1), ["lrp"]), "C")
    assert not service.needs_first_read(db, service.next_assignment(db, plain))


def test_methods_may_be_variants_and_are_checked(db):
    cases = make_cases(2)
    variants = ["gradcam", "gradcam(layer=blocks.6)", "lrp(composite=epsilon-gamma-box)"]
    code = service.create_study(db, PASSWORD, "layers", cases, variants)
    (study,) = db["studies"].rows_where("code = ?", [code])
    assert json.loads(study["methods"]) == variants
    for bad, message in (
        ("gradcam(depth=3)", "Cannot read the setting 'depth=3'"),
        ("lrp(composite=zplus)", "must be one of"),
        ("psychic", "Unknown explanation method"),
    ):
        with pytest.raises(StudyError, match=message):
            service.create_study(db, PASSWORD, "bad", cases, ["gradcam", bad])


def test_timing_explained_label_and_the_admins_progress(db, tmp_path):
    code = service.create_study(db, PASSWORD, "timed", make_cases(2), ["gradcam"])
    assert service.study_by_code(db, code)["explain"] == "prediction"  # the default now
    with pytest.raises(StudyError, match="Panels explain one of"):
        service.create_study(db, PASSWORD, "x", make_cases(1), ["gradcam"], explain="both")
    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    scores = full_scores(task)
    with pytest.raises(StudyError, match="Waiting time is out of range"):
        service.submit(db, rater, task.id, scores, True, wait_seconds=-3)
    service.submit(
        db, rater, task.id, scores, True, seconds_on_case=12.5,
        started_at="2026-11-29 10:00:00", wait_seconds=40.0, explained_label="Normal",
    )  # fmt: skip
    row = next(db["ratings"].rows)
    assert row["started_at"] == "2026-11-29 10:00:00" and row["started_at"] < row["submitted_at"]
    assert (row["seconds_on_case"], row["wait_seconds"]) == (12.5, 40.0)
    assert row["explained_label"] == "Normal" and row["target"] == "COVID-19"
    assert service.progress(db, service.study_by_code(db, code)["id"], real_names=True) == [
        {"rater": "Dr Ada", "pseudonym": "R01", "done": 1, "total": 2}
    ]
    assert service.progress(db, service.study_by_code(db, code)["id"])[0]["rater"] == "R01"


def test_each_rating_keeps_its_maps_settings_and_compute_time(db, code, tmp_path):
    """G5: the app version, the checkpoint hash, the shown map's full settings and the
    seconds it took (or that it came from the cache) stay with each panel's rating."""
    from cxrxai.study.analysis import export

    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    maps = {
        "gradcam": service.MapRecord({"layer": None, "eigen_smooth": False}, 0.04, False),
        "lime": service.MapRecord({"n_samples": 1000, "n_segments": 50}, 7.2, True),
    }
    with pytest.raises(StudyError, match="methods not shown"):
        service.submit(db, rater, task.id, full_scores(task), True,
                       maps={"nosuch": maps["lime"]})  # fmt: skip
    with pytest.raises(StudyError, match="compute time is out of range"):
        service.submit(db, rater, task.id, full_scores(task), True,
                       maps={"lime": service.MapRecord({}, -1.0, False)})  # fmt: skip
    stored = service.submit(
        db, rater, task.id, full_scores(task), True, checkpoint_sha256="abc", maps=maps
    )
    assert stored == 4
    rows = {r["method"]: r for r in db["ratings"].rows}
    assert json.loads(rows["lime"]["method_settings"]) == {"n_samples": 1000, "n_segments": 50}
    assert (rows["lime"]["map_seconds"], rows["lime"]["map_cached"]) == (7.2, 1)
    assert (rows["gradcam"]["map_seconds"], rows["gradcam"]["map_cached"]) == (0.04, 0)
    assert rows["shap"]["method_settings"] is None  # not given: left missing, never invented
    assert {r["app_version"] for r in rows.values()} == {service.__version__}
    assert {r["checkpoint_sha256"] for r in rows.values()} == {"abc"}
    study_id = service.study_by_code(db, code)["id"]
    export(db, study_id, tmp_path / "out")
    header = (tmp_path / "out" / "ratings.csv").read_text().splitlines()[0]
    assert "method_settings,map_seconds,map_cached" in header


def test_practice_cases_come_first_and_stay_out_of_the_analysis(db, tmp_path):
    from cxrxai.study.analysis import export, ratings

    practice = [CaseRef(f"practice-{i}", "covid-qu-ex", "Val", "Normal") for i in range(2)]
    code = service.create_study(db, PASSWORD, "p", make_cases(3), METHODS, practice=practice)
    with pytest.raises(StudyError, match="must not be study cases"):
        service.create_study(db, PASSWORD, "x", make_cases(3), METHODS, practice=make_cases(1))
    with pytest.raises(StudyError, match="At most 10 practice cases"):
        many = [CaseRef(f"p{i}", "d", "s", "t") for i in range(11)]
        service.create_study(db, PASSWORD, "x", make_cases(1), METHODS, practice=many)
    rater = service.join(db, code, "Dr Ada")
    headings = []
    while (task := service.next_assignment(db, rater)) is not None:
        headings.append(task.heading)
        assert task.practice == task.case_id.startswith("practice-")
        service.submit(db, rater, task.id, full_scores(task, 5 if task.practice else 3), True)
    assert headings == ["Practice case 1 of 2", "Practice case 2 of 2", "Case 1 of 3",
                        "Case 2 of 3", "Case 3 of 3"]  # fmt: skip
    study_id = service.study_by_code(db, code)["id"]
    assert db["ratings"].count_where("practice = 1") == 2 * len(METHODS)
    proper = ratings(db, study_id)
    assert len(proper) == 3 * len(METHODS) and {r["trust"] for r in proper} == {3}
    assert len(ratings(db, study_id, practice=True)) == 2 * len(METHODS)
    assert service.progress(db, study_id) == [{"rater": "R01", "done": 3, "total": 3}]
    written = {p.name for p in export(db, study_id, tmp_path / "out")}
    assert "practice_ratings.csv" in written
    assert "practice-0" not in (tmp_path / "out" / "ratings.csv").read_text()


def test_reader_marks_are_required_checked_stored_and_exported(db, tmp_path):
    from cxrxai.study.analysis import export, marks_summary, ratings, reader_marks

    code = service.create_study(db, PASSWORD, "m", make_cases(1), ["gradcam", "lrp"],
                                localise=True)  # fmt: skip
    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    scores = full_scores(task)
    with pytest.raises(StudyError, match="Mark where the finding is"):
        service.submit(db, rater, task.id, scores, True)
    for bad, message in [
        (service.Marks([(10, 10, 5, 20)]), "x_max > x_min"),
        (service.Marks([(float("nan"), 0, 5, 5)]), "non-negative numbers"),
        (service.Marks([(0, 0, 5, 5)], 1.5), "between 0 and 1"),
        (service.Marks([(0, 0, 5, 5)], None, {"shap": 0.2}), "methods not shown"),
        (service.Marks([(0, 0, 5, 5)] * 21), "At most 20 boxes"),
    ]:
        with pytest.raises(StudyError, match=message):
            service.submit(db, rater, task.id, scores, True, marks=bad)
    marks = service.Marks([(10, 20, 60, 80), (100, 20, 150, 90)], 0.4,
                          {"gradcam": 0.3, "lrp": 0.1})  # fmt: skip
    assert service.submit(db, rater, task.id, scores, True, marks=marks) == 2
    study_id = service.study_by_code(db, code)["id"]
    stored = reader_marks(db, study_id)
    assert [(m["rater"], m["x_min"], m["iou_reference"]) for m in stored] == [
        ("R01", 10.0, 0.4), ("R01", 100.0, 0.4)]  # fmt: skip
    rows = ratings(db, study_id)
    assert {r["method"]: r["mark_iou"] for r in rows} == {"gradcam": 0.3, "lrp": 0.1}
    summary = marks_summary(rows, stored)
    assert summary["marks"] == 2 and summary["iou_with_panel_region"]["gradcam"]["mean"] == 0.3
    export(db, study_id, tmp_path / "out")
    manifest = (tmp_path / "out" / "reader_marks.csv").read_text()
    assert manifest.splitlines()[0].startswith("image,case_id,split,labels,kind,label,author")
    assert "case-0" in manifest and "R01" in manifest


def test_staged_reveal_keeps_each_stage_in_order(db, tmp_path):
    from cxrxai.study.analysis import export, ratings, staged_decisions

    labels = ["COVID-19", "Non-COVID", "Normal"]
    cases = [CaseRef(f"case-{i}", "covid-qu-ex", "Val", "COVID-19", "COVID-19") for i in range(2)]
    code = service.create_study(db, PASSWORD, "st", cases, ["gradcam"], staged=True)
    assert service.study_by_code(db, code)["first_read"] == 1  # stage two is the first read
    rater = service.join(db, code, "Dr Ada")
    task = service.next_assignment(db, rater)
    assert service.needs_image_read(db, task) and service.needs_first_read(db, task)
    with pytest.raises(StudyError, match="reading of the image alone first"):
        service.record_first_read(db, rater, task.id, True, confidence=50)
    with pytest.raises(StudyError, match="one of the offered labels"):
        service.record_image_read(db, rater, task.id, "Pneumothorax", labels, 50)
    with pytest.raises(StudyError, match="confidence"):
        service.record_image_read(db, rater, task.id, "Normal", labels, None)
    assert service.record_image_read(db, rater, task.id, "Normal", labels, 40, seconds=3.0)
    assert not service.record_image_read(db, rater, task.id, "COVID-19", labels, 90)  # kept
    assert not service.needs_image_read(db, task)
    service.record_first_read(db, rater, task.id, True, confidence=60)
    service.submit(db, rater, task.id, full_scores(task), True, confidence=80)
    task = service.next_assignment(db, rater)
    service.record_image_read(db, rater, task.id, "COVID-19", labels, 70)
    service.record_first_read(db, rater, task.id, False, confidence=30)
    service.submit(db, rater, task.id, full_scores(task), False, confidence=20)
    study_id = service.study_by_code(db, code)["id"]
    rows = ratings(db, study_id)
    assert [r["image_read_label"] for r in rows] == ["Normal", "COVID-19"]
    summary = staged_decisions(rows)
    assert summary["reads"] == 2
    assert summary["matches_model_image_alone"]["mean"] == 0.5  # Normal vs COVID-19
    assert summary["agrees_with_model_label_shown"]["mean"] == 0.5
    export(db, study_id, tmp_path / "out")
    assert "image_read_label" in (tmp_path / "out" / "ratings.csv").read_text().splitlines()[0]


def test_crossover_with_washout_pairs_each_case_without_and_with(db, monkeypatch):
    from cxrxai.study.analysis import crossover_pairs, ratings

    with pytest.raises(StudyError, match="washout is 0 to 365"):
        service.create_study(db, PASSWORD, "x", make_cases(2), ["gradcam"], washout_days=-1)
    code = service.create_study(db, PASSWORD, "c", make_cases(4), ["gradcam"], washout_days=14)
    study_id = service.study_by_code(db, code)["id"]
    conditions = {}
    for name in ("Dr A", "Dr B"):
        rater = service.join(db, code, name)
        rows = list(db["assignments"].rows_where("rater_id = ?", [rater.id], order_by="position"))
        assert [r["session"] for r in rows] == [1] * 4 + [2] * 4
        for case in {r["case_id"] for r in rows}:  # each case once each way
            assert sorted(r["condition"] for r in rows if r["case_id"] == case) == [
                "with", "without"]  # fmt: skip
        conditions[name] = [r["condition"] for r in rows[:4]]
        assert conditions[name].count("with") == 2  # half of session one each way
    assert conditions["Dr A"] != conditions["Dr B"]  # balanced over raters
    rater = service.resume(db, service.join(db, code, "Dr C").token)
    for _ in range(4):  # session one
        task = service.next_assignment(db, rater)
        assert task.session == 1 and service.session_opens(db, rater, task) is None
        assert service.needs_first_read(db, task) == (not task.aided)
        if task.aided:
            service.submit(db, rater, task.id, full_scores(task), True, confidence=80)
        else:
            service.record_first_read(db, rater, task.id, True, confidence=40)
    task = service.next_assignment(db, rater)
    assert task.session == 2
    opens = service.session_opens(db, rater, task)
    assert opens is not None and opens > service.timestamp(time.time() + 13 * 86400)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 15 * 86400)  # after the washout
    assert service.session_opens(db, rater, task) is None
    for _ in range(4):  # session two, the other condition
        task = service.next_assignment(db, rater)
        if task.aided:
            service.submit(db, rater, task.id, full_scores(task), True, confidence=80)
        else:
            service.record_first_read(db, rater, task.id, False, confidence=40)
    assert service.next_assignment(db, rater) is None
    pairs = crossover_pairs(db, study_id)
    assert pairs["pairs"] == 4 and pairs["washout_days"] == 14
    assert (pairs["confidence_without"], pairs["confidence_with"]) == (40.0, 80.0)
    assert pairs["confidence_difference"]["mean"] == 40.0
    assert len(ratings(db, study_id)) == 4  # the aided reads: one panel each


def test_the_label_the_panels_explain():
    """One rule with the Review page (ModelCard.explained_by_default): the most probable
    label the model calls positive - not the arg-max when per-label thresholds differ -,
    else the most probable."""
    from cxrxai.card import ModelCard

    labels, probabilities = ["COVID-19", "Non-COVID", "Normal"], [0.2, 0.5, 0.3]
    card = ModelCard("resnet18", labels, "multilabel", (224, 224), 1, {"mean": [0.5], "std": [0.5]},
                     thresholds={"COVID-19": 0.1, "Non-COVID": 0.6, "Normal": 0.25})  # fmt: skip
    prediction, reference = {"explain": "prediction"}, {"explain": "reference"}
    # Non-COVID is the most probable but below its threshold; Normal is the most probable
    # of the positives (COVID-19 and Normal)
    assert service.explained_label(prediction, "Normal", card, probabilities) == (
        "Normal",
        "the model's prediction",
    )
    assert service.explained_label(reference, "COVID-19", card, probabilities)[0] == "COVID-19"
    none_positive = [0.05, 0.5, 0.2]
    assert card.positives(none_positive) == []
    assert service.explained_label(prediction, "Normal", card, none_positive)[0] == "Non-COVID"


def test_summary_table_is_rounded():
    from cxrxai.study import analysis

    rows = [
        {"method": "gradcam", "trust": t, "localisation": 3, "usefulness": 2} for t in (2, 2, 3)
    ]
    (row,) = analysis.summary_table(rows)
    assert row["trust mean [95 % CI]"].startswith("2.33 [") and row["n"] == 3
    assert "2.3333" not in str(row)


def test_an_admin_sign_in_token_stands_for_the_password_until_it_ends(db, monkeypatch):
    token = service.sign_in_admin(db, PASSWORD, "browser-1")
    assert PASSWORD not in repr(token) and token.value not in repr(token)
    service.check_admin_token(db, token)
    code = service.create_study(db, token, "by token", [CaseRef("c1", "d", "s", "COVID-19")],
                                ["gradcam"])  # fmt: skip
    assert service.study_by_code(db, code)["name"] == "by token"
    stored = [r["key"] for r in db["settings"].rows if r["key"].startswith("admin_session:")]
    assert len(stored) == 1 and token.value not in stored[0]  # only its hash is kept
    with pytest.raises(StudyError, match="sign in again"):
        service.check_admin_token(db, service.AdminToken("forged"))
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + service.ADMIN_SESSION_SECONDS + 1)
    with pytest.raises(StudyError, match="expired"):
        service.check_admin_token(db, token)
    monkeypatch.setattr(time, "time", lambda: now)
    service.set_admin_password(db, "another admin password", replace=True)
    with pytest.raises(StudyError, match="sign in again"):  # a new password ends every token
        service.create_study(db, token, "x", [CaseRef("c1", "d", "s", "COVID-19")], ["gradcam"])
