"""Assignments and progress: a rater's next case, which reads it still needs, when a
crossover's second session opens, and each rater's progress.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from cxrxai.sqlitedb import epoch_seconds, timestamp
from cxrxai.study.accounts import Rater, resume
from cxrxai.study.common import StudyError
from cxrxai.study.protocol import shown_labels


@dataclass(frozen=True)
class Assignment:
    id: int
    position: int
    total: int
    case_id: str
    dataset: str
    split: str
    target: str
    methods: list[str]  # real names, display order
    shown_as: list[str]  # what the rater sees
    blinded: bool
    practice: bool = False  # a familiarisation case, left out of the analysis
    practice_total: int = 0  # the rater's practice cases (before the study proper)
    session: int = 1  # crossover: the reading session
    aided: bool = True  # crossover: shown with the explanations (else the first read only)

    @property
    def heading(self) -> str:
        """ "Practice case 1 of 2" or "Case 3 of 8" (the study proper counted apart)."""
        if self.practice:
            return f"Practice case {self.position + 1} of {self.practice_total}"
        return f"Case {self.position - self.practice_total + 1} of {self.total}"


def next_assignment(db: sqlite_utils.Database, rater: Rater) -> Assignment | None:
    """The rater's first assignment without ratings (None when all are done)."""
    study = db["studies"].get(rater.study_id)
    blinded = study["mode"] == "blinded"
    total = db["assignments"].count_where("rater_id = ? and practice = 0", [rater.id])
    practice_total = db["assignments"].count_where("rater_id = ? and practice = 1", [rater.id])
    rows = db.execute(
        "select * from assignments a where a.rater_id = ? and not exists "
        "(select 1 from ratings r where r.assignment_id = a.id) and not (a.condition = "
        "'without' and exists (select 1 from first_reads f where f.assignment_id = a.id)) "
        "order by a.position limit 1",
        [rater.id],
    ).fetchall()
    if not rows:
        return None
    columns = [d[0] for d in db.execute("select * from assignments limit 0").description]
    row = dict(zip(columns, rows[0], strict=True))
    order = json.loads(row["methods_order"])
    return Assignment(
        row["id"],
        row["position"],
        total,
        row["case_id"],
        row["dataset"],
        row["split"],
        row["target"],
        order,
        shown_labels(order, blinded),
        blinded,
        bool(row.get("practice")),
        practice_total,
        int(row.get("session") or 1),
        row.get("condition", "with") != "without",
    )


def needs_first_read(db: sqlite_utils.Database, assignment: Assignment) -> bool:
    """Whether the rater must give the case's first read (no explanations shown yet): in a
    first-read study, and in a crossover's reads without explanations (then the only one)."""
    study = db["studies"].get(db["assignments"].get(assignment.id)["study_id"])
    if not study.get("first_read") and assignment.aided:
        return False
    return db["first_reads"].count_where("assignment_id = ?", [assignment.id]) == 0


def needs_image_read(db: sqlite_utils.Database, assignment: Assignment) -> bool:
    """Whether a staged study still needs the rater's read of the image alone."""
    study = db["studies"].get(db["assignments"].get(assignment.id)["study_id"])
    if not study.get("staged"):
        return False
    return db["image_reads"].count_where("assignment_id = ?", [assignment.id]) == 0


def session_opens(db: sqlite_utils.Database, rater: Rater, assignment: Assignment) -> str | None:
    """When a crossover's second session opens for this rater (the washout after their
    last read of session one), as "YYYY-MM-DD HH:MM:SS" UTC; None when it is open."""
    if assignment.session < 2:
        return None
    study = db["studies"].get(rater.study_id)
    row = db.execute(
        "select max(t) from (select g.submitted_at as t from ratings g join assignments a "
        "on a.id = g.assignment_id where a.rater_id = ? and a.session = 1 union all "
        "select f.at from first_reads f join assignments a on a.id = f.assignment_id "
        "where a.rater_id = ? and a.session = 1)",
        [rater.id, rater.id],
    ).fetchone()
    if not row or not row[0]:
        return None
    last = epoch_seconds(row[0])  # stored as UTC
    opens = last + 86400 * int(study.get("washout_days") or 0)
    return None if time.time() >= opens else timestamp(opens)


def own_assignment(db: sqlite_utils.Database, rater: Rater, assignment_id: int) -> dict:
    """The assignment, when it is this rater's (their token checked); else StudyError."""
    if resume(db, rater.token).id != rater.id:
        raise StudyError("This assignment is not yours.")
    rows = list(db["assignments"].rows_where("id = ? and rater_id = ?", [assignment_id, rater.id]))
    if not rows:
        raise StudyError("This assignment is not yours.")
    return rows[0]


def progress(
    db: sqlite_utils.Database, study_id: int, real_names: bool = False
) -> list[dict[str, Any]]:
    """Per rater: assignments done and total; raters by pseudonym (exports) or, for the
    admin's own view, by name next to their pseudonym (``real_names``)."""
    return [
        ({"rater": r[3], "pseudonym": r[0]} if real_names else {"rater": r[0]})
        | {"done": r[1], "total": r[2]}
        for r in db.execute(
            "select r.pseudonym, count(distinct g.assignment_id), "
            "(select count(*) from assignments a where a.rater_id = r.id and a.practice = 0), "
            "r.name from raters r left join ratings g on g.rater_id = r.id and g.practice = 0 "
            "where r.study_id = ? group by r.id order by r.pseudonym",
            [study_id],
        ).fetchall()
    ]
