"""Submission: a rater's reads (the image alone, the first read) and ratings of a case's
panels, validated and stored once.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from cxrxai import __version__
from cxrxai.sqlitedb import timestamp, write_transaction
from cxrxai.study.accounts import Rater
from cxrxai.study.assignment import own_assignment
from cxrxai.study.common import (
    MAX_COMMENT_CHARS,
    MAX_DISPLAY_CHARS,
    StudyError,
    audit,
)
from cxrxai.study.protocol import shown_labels

LIKERT = (1, 2, 3, 4, 5)


SCORES = ("trust", "localisation", "usefulness")


def checked_confidence(value: Any, required: bool = False) -> int | None:
    """A confidence (0-100) that the explained finding is present, or None when not
    given and not ``required``."""
    if value is None and not required:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise StudyError(
            "Give your confidence that the explained finding is present: a whole number "
            "from 0 (certainly absent) to 100 (certainly present)."
        )
    return value


def _store_once(
    db: sqlite_utils.Database,
    table: str,
    rater: Rater,
    assignment: dict,
    read: dict[str, Any],
    action: str,
) -> bool:
    """A read of an assignment, stored once with its audit line; False when one was stored
    already (reads are never replaced: later stages may have been seen since)."""
    row = {"assignment_id": assignment["id"], "rater_id": rater.id,
           "study_id": assignment["study_id"], **read}  # fmt: skip
    try:
        with write_transaction(db):
            db[table].insert(row)
            audit(db, f"rater:{rater.id}", action, assignment=assignment["id"])
    except sqlite3.IntegrityError:
        return False
    return True


def record_image_read(
    db: sqlite_utils.Database,
    rater: Rater,
    assignment_id: int,
    label: str | None,
    labels: list[str],
    confidence: int | None,
    seconds: float | None = None,
) -> bool:
    """Stage one of a staged reveal: the rater's own label (one of ``labels``, the model's)
    and confidence, given with nothing of the model on screen; stored once (False when it
    was stored already: never replaced)."""
    assignment = own_assignment(db, rater, assignment_id)
    if label not in labels:
        raise StudyError("Choose your reading of the image: one of the offered labels.")
    read = {
        "label": label,
        "confidence": checked_confidence(confidence, required=True),
        "seconds": checked_seconds(seconds, "Time on the image alone"),
        "at": timestamp(),
    }
    return _store_once(db, "image_reads", rater, assignment, read, "image_read")


def record_first_read(
    db: sqlite_utils.Database,
    rater: Rater,
    assignment_id: int,
    agrees_with_model: bool,
    seconds: float | None = None,
    confidence: int | None = None,
    require_confidence: bool = False,
) -> bool:
    """Store the read given before the explanations were shown (``seconds``: from the
    image on screen to the answer); returns False if one was already stored (it is never
    replaced: the explanations may have been seen since)."""
    assignment = own_assignment(db, rater, assignment_id)
    if agrees_with_model not in (True, False):
        raise StudyError("Answer yes or no: do you agree with the model's diagnosis?")
    study = db["studies"].get(assignment["study_id"])
    if study.get("staged") and not db["image_reads"].count_where(
        "assignment_id = ?", [assignment_id]
    ):
        raise StudyError("Give your reading of the image alone first.")
    read = {
        "agrees_with_model": int(agrees_with_model),
        "at": timestamp(),
        "seconds": checked_seconds(seconds, "Time on the first read"),
        "confidence": checked_confidence(confidence, require_confidence),
    }
    return _store_once(db, "first_reads", rater, assignment, read, "first_read")


MAX_MARKS = 20


@dataclass(frozen=True)
class Marks:
    """A rater's boxes where the finding is (image pixels) and their IoUs with the
    reference annotation and with each panel's region (:func:`cxrxai.study.marks.score_marks`)."""

    boxes: list[tuple[float, float, float, float]]
    iou_reference: float | None = None
    iou_by_method: dict[str, float | None] = field(default_factory=dict)

    def check(self, methods: list[str]) -> None:
        if len(self.boxes) > MAX_MARKS:
            raise StudyError(f"At most {MAX_MARKS} boxes per case.")
        for box in self.boxes:
            if len(box) != 4 or not all(math.isfinite(v) and v >= 0 for v in box):
                raise StudyError("A box is four non-negative numbers (x_min, y_min, x_max, y_max).")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise StudyError("A box needs x_max > x_min and y_max > y_min.")
        for value in [self.iou_reference, *self.iou_by_method.values()]:
            if value is not None and not 0.0 <= value <= 1.0:
                raise StudyError("An IoU lies between 0 and 1.")
        if set(self.iou_by_method) - set(methods):
            raise StudyError("Mark IoUs for methods not shown.")


@dataclass(frozen=True)
class MapRecord:
    """What a rater was shown for one panel: the map's full settings, the seconds it took
    to compute and whether it came from the cache."""

    settings: dict[str, Any]
    seconds: float
    cached: bool

    def columns(self) -> dict[str, Any]:
        text = json.dumps(self.settings, sort_keys=True, default=str)
        if len(text) > MAX_DISPLAY_CHARS:
            raise StudyError(f"A map's settings are limited to {MAX_DISPLAY_CHARS} characters.")
        return {
            "method_settings": text,
            "map_seconds": checked_seconds(self.seconds, "A map's compute time"),
            "map_cached": int(bool(self.cached)),
        }


def checked_seconds(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < 86400:
        raise StudyError(f"{what} is out of range ({value!r}).")
    return seconds


def _likert(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in LIKERT:
        raise StudyError(f"{what} must be a whole number from 1 to 5, got {value!r}.")
    return value


def submit(
    db: sqlite_utils.Database,
    rater: Rater,
    assignment_id: int,
    scores: dict[str, dict[str, int]],
    agrees_with_model: bool | None,
    comment: str = "",
    seconds_on_case: float = 0.0,
    display: dict[str, Any] | None = None,
    started_at: str | None = None,
    checkpoint_sha256: str = "",
    wait_seconds: float | None = None,
    explained_label: str | None = None,
    confidence: int | None = None,
    require_confidence: bool = False,
    maps: dict[str, MapRecord] | None = None,
    marks: Marks | None = None,
) -> int:
    """Store one assignment's ratings (one row per panel); returns the rows stored.

    ``maps``: per method of the assignment, the shown map's settings, compute seconds and
    whether it came from the cache (G5), stored with its panel's rating. ``marks``: the
    rater's boxes where the finding is and their IoUs (required when the study localises).

    ``scores``: shown label ("A" or the method name) -> {"trust", "localisation",
    "usefulness"} 1-5. ``started_at``: when the panels were on screen; ``seconds_on_case``
    from then to the submit (time on task); ``wait_seconds``: how long the rater waited
    for the maps before that, kept apart and never analysed; ``explained_label``: the
    label the panels explained. A resubmission of an already rated assignment stores
    nothing and returns 0 (a double click or a reload after submitting).
    """
    assignment = own_assignment(db, rater, assignment_id)  # the token must be its rater's
    study = db["studies"].get(assignment["study_id"])
    order = json.loads(assignment["methods_order"])
    labels = shown_labels(order, study["mode"] == "blinded")
    if set(scores) != set(labels):
        raise StudyError(f"Rate every panel: expected {labels}, got {sorted(scores)}.")
    if study.get("first_read") and not db["first_reads"].count_where(
        "assignment_id = ?", [assignment_id]
    ):
        raise StudyError("Give your first read of this case (before the explanations) first.")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise StudyError(f"The comment is limited to {MAX_COMMENT_CHARS} characters.")
    if agrees_with_model not in (True, False, None):
        raise StudyError("Agreement with the model must be yes, no or not given.")
    seconds_on_case = checked_seconds(seconds_on_case, "Time on case")
    wait_seconds = checked_seconds(wait_seconds, "Waiting time")
    display_json = json.dumps(display or {}, default=str)
    if not isinstance(display or {}, dict) or len(display_json) > MAX_DISPLAY_CHARS:
        raise StudyError(
            f"The display settings sent with the ratings are limited to {MAX_DISPLAY_CHARS} "
            "characters of JSON."
        )
    if study.get("localise") and (marks is None or not marks.boxes):
        raise StudyError("Mark where the finding is: drag at least one box on the image.")
    if marks is not None:
        marks.check(order)
    maps = maps or {}
    unknown = set(maps) - set(order)
    if unknown:
        raise StudyError(f"Map records for methods not shown: {sorted(unknown)[:3]}.")
    records = []
    for label, method in zip(labels, order, strict=True):
        given = scores[label]
        shown_map = maps.get(method)
        records.append(
            {
                "assignment_id": assignment_id,
                "rater_id": rater.id,
                "study_id": assignment["study_id"],
                "case_id": assignment["case_id"],
                "method": method,
                "shown_as": label,
                "target": assignment["target"],
                **{s: _likert(given.get(s), f"{s.capitalize()} for panel {label}") for s in SCORES},
                "agrees_with_model": None if agrees_with_model is None else int(agrees_with_model),
                "comment": comment,
                "display": display_json,
                "seconds_on_case": seconds_on_case,
                "wait_seconds": wait_seconds,
                "explained_label": explained_label or assignment["target"],
                "started_at": started_at or timestamp(),
                "submitted_at": timestamp(),
                "app_version": __version__,
                "checkpoint_sha256": checkpoint_sha256,
                **(shown_map.columns() if shown_map is not None else {}),
                "practice": int(bool(assignment.get("practice"))),
                "mark_iou": None if marks is None else marks.iou_by_method.get(method),
            }
        )
    confidence = checked_confidence(confidence, require_confidence)  # after the panels'
    for record in records:
        record["confidence"] = confidence
    try:
        with write_transaction(db):
            db["ratings"].insert_all(records)
            if marks is not None:
                db["reader_marks"].insert_all(
                    {
                        "assignment_id": assignment_id,
                        "rater_id": rater.id,
                        "study_id": assignment["study_id"],
                        "case_id": assignment["case_id"],
                        # what the rater was asked to mark: the label the panels explain
                        "target": explained_label or assignment["target"],
                        **dict(zip(("x_min", "y_min", "x_max", "y_max"), box, strict=True)),
                        "iou_reference": marks.iou_reference,
                        "at": timestamp(),
                    }
                    for box in marks.boxes
                )
            audit(db, f"rater:{rater.id}", "rate", assignment=assignment_id, panels=len(records))
    except sqlite3.IntegrityError:
        return 0  # already rated: keep the first submission
    return len(records)
