"""Hostile study input, one catalogue: names that impersonate, text that turns into a
formula in a spreadsheet, oversized fields, guessable codes, files others can read. Each
is refused with a clear StudyError (nothing stored) or stored and exported harmlessly."""

from __future__ import annotations

import csv
import json
import stat

import pytest

from cxrxai.csvout import csv_text, spreadsheet_safe
from cxrxai.study import analysis, service
from cxrxai.study.db import connect
from cxrxai.study.service import CaseRef, StudyError

PASSWORD = "admin password"


@pytest.fixture()
def code(db):
    cases = [CaseRef(f"c{i}", "covid-qu-ex", "Val", "COVID-19") for i in range(2)]
    return service.create_study(db, PASSWORD, "pilot", cases, ["gradcam", "lrp"])


@pytest.mark.parametrize(
    "impostor",
    [
        "alice",
        "ALICE",
        "Al\u200bice",
        "\uff21\uff4c\uff49\uff43\uff45",
        " Alice\u200d ",
        "Alice\u202e",
    ],
    ids=["lower", "upper", "zero-width space", "full-width", "joiner", "bidi override"],
)
def test_a_name_that_is_alice_again_is_refused(db, code, impostor):
    service.join(db, code, "Alice")
    with pytest.raises(StudyError, match="already taken"):
        service.join(db, code, impostor)
    assert db["raters"].count == 1


@pytest.mark.parametrize(
    "name", ["\u0410lice", "Bo\u0431", "J\u043ehn"], ids=["Cyrillic A", "Cyrillic b", "Cyrillic o"]
)
def test_a_name_mixing_look_alike_alphabets_is_refused(db, code, name):
    with pytest.raises(StudyError, match="one alphabet"):
        service.join(db, code, name)
    assert db["raters"].count == 0


@pytest.mark.parametrize(
    ("first", "second"),
    [("BOB", "\u0412\u041e\u0412"), ("\u0412\u041e\u0412", "bob"), ("TOM", "\u03a4\u039f\u039c")],
    ids=["Cyrillic after Latin", "Latin after Cyrillic", "Greek after Latin"],
)
def test_a_name_in_another_alphabet_that_looks_the_same_is_refused(db, code, first, second):
    """ "ВОВ" wholly in Cyrillic is not a mixed name, but next to "BOB" nobody reading the
    progress table or an export could tell the two raters apart."""
    service.join(db, code, first)
    with pytest.raises(StudyError, match="looks the same"):
        service.join(db, code, second)
    assert db["raters"].count == 1


def test_names_in_one_alphabet_are_welcome(db, code):
    for name in ("Анна Петрова", "Zoë O'Neill", "李小龍", "Alice"):
        service.join(db, code, name)
    assert db["raters"].count == 4


FORMULAS = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.mark.parametrize("text", FORMULAS)
def test_text_that_a_spreadsheet_would_run_is_neutralised_in_csv_only(db, code, text, tmp_path):
    rater = service.join(db, code, "Dr " + text.strip() if text.strip() else "Dr X")
    task = service.next_assignment(db, rater)
    scores = {label: {s: 3 for s in service.SCORES} for label in task.shown_as}
    service.submit(db, rater, task.id, scores, True, comment=text)
    study_id = service.study_by_code(db, code)["id"]
    paths = analysis.export(db, study_id, tmp_path / "out", real_names=True)
    with open(paths[0], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["comment"] == "'" + text for row in rows)
    stored = json.loads((tmp_path / "out" / "ratings.json").read_text())
    assert all(row["comment"] == text for row in stored)  # JSON keeps the raw text
    assert spreadsheet_safe(text).startswith("'") and spreadsheet_safe(-2.5) == -2.5


def test_oversized_fields_are_refused_and_nothing_stored(db, code):
    rater = service.join(db, code, "Bob")
    task = service.next_assignment(db, rater)
    scores = {label: {s: 3 for s in service.SCORES} for label in task.shown_as}
    with pytest.raises(StudyError, match="display settings"):
        service.submit(db, rater, task.id, scores, True, display={"x": "a" * 1_000_000})
    with pytest.raises(StudyError, match="comment is limited"):
        service.submit(db, rater, task.id, scores, True, comment="a" * 100_000)
    with pytest.raises(StudyError, match="name"):
        service.join(db, code, "n" * 10_000)
    assert db["ratings"].count == 0 and db["raters"].count == 1


def test_study_codes_are_long_and_typed_loosely(db, code):
    groups = code.split("-")
    assert len(groups) == 4 and all(len(g) == 4 for g in groups)  # 80 bits
    assert not set(code.replace("-", "")) & set("ILOU")
    assert service.study_by_code(db, code.lower().replace("-", " "))["name"] == "pilot"
    assert service.study_by_code(db, code.replace("-", ""))["name"] == "pilot"
    codes = {service.new_study_code() for _ in range(1000)}
    assert len(codes) == 1000


def test_study_files_are_private_to_their_owner(tmp_path):
    path = tmp_path / "private.sqlite"
    db = connect(path)
    service.set_admin_password(db, PASSWORD)
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE((tmp_path / f"private.sqlite{suffix}").stat().st_mode)
        assert mode == 0o600, (suffix, oct(mode))
    old = tmp_path / "old.sqlite"
    old.touch(mode=0o644)
    old.chmod(0o644)
    connect(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o600  # narrowed on opening


def test_csv_text_writes_a_header_for_no_rows():
    assert csv_text([], ["a", "b"]).strip() == "a,b"
