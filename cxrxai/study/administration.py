"""Administration: a study set up (its cases, methods and options, its code and invitation
link).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import sqlite_utils

from cxrxai.errors import CxrxaiError
from cxrxai.sqlitedb import timestamp, write_transaction
from cxrxai.study.accounts import AdminToken, require_admin
from cxrxai.study.common import MAX_COMMENT_CHARS, StudyError, audit, new_study_code
from cxrxai.study.sham import SHAM_PREFIX

EXPLAIN_CHOICES = ("prediction", "reference")


MAX_PRACTICE_CASES = 10


MAX_WASHOUT_DAYS = 365


@dataclass(frozen=True)
class CaseRef:
    case_id: str
    dataset: str
    split: str
    target: str  # the case's reference label
    predicted: str | None = None  # the labels the model calls positive, ";"-joined

    @property
    def model_correct(self) -> bool | None:
        """Whether the model's decision on the reference label was right (None: unknown)."""
        if self.predicted is None:
            return None
        return self.target in self.predicted.split(";")


def create_study(
    db: sqlite_utils.Database,
    admin_password: str | AdminToken,
    name: str,
    cases: list[CaseRef],
    methods: list[str],
    blinded: bool = True,
    seed: int = 0,
    instructions: str = "",
    first_read: bool = False,
    explain: str = "prediction",
    prepare: bool = True,
    practice: list[CaseRef] | None = None,
    localise: bool = False,
    shams: list[str] | None = None,
    staged: bool = False,
    washout_days: int | None = None,
) -> str:
    """A new study; returns its code (what raters type to join). ``prepare``: the study
    opens to raters once every map it shows is computed (:mod:`cxrxai.study.prepare`), so
    nobody waits for one. ``practice``: familiarisation cases every rater sees first,
    marked as such and left out of the analysis. ``localise``: raters also draw boxes
    where the finding is (:mod:`cxrxai.study.marks`). ``shams``: methods that also get a
    sham panel (the map of another class, :mod:`cxrxai.study.sham`), blinded studies only.
    ``staged``: a staged reveal - the image alone (the rater's own label), then the
    model's label (the first read, implied), then the explanations. ``washout_days``: a
    crossover - each case read in two sessions at least that many days apart, with the
    explanations in one and without them in the other (half of the cases each way per
    session, balanced over raters).
    ``first_read``: each
    case is read first without explanations (does the rater agree with the model?), then
    rated with them, so the analysis can tell how often the explanations changed the
    rater's decision. ``explain``: which label the panels explain, the model's prediction
    ("prediction", what a clinician sees in practice) or the case's reference label."""
    require_admin(db, admin_password)
    if explain not in EXPLAIN_CHOICES:
        raise StudyError(f"Panels explain one of {list(EXPLAIN_CHOICES)}, got '{explain}'.")
    if not cases:
        raise StudyError("A study needs at least one case.")
    if len(methods) < 1 or len(set(methods)) != len(methods):
        raise StudyError(f"Methods must be distinct and at least one, got {methods}.")
    from cxrxai.explain.params import parse_variant  # the explainers are heavy imports
    from cxrxai.explain.registry import get_explainer

    if washout_days is not None and not (
        isinstance(washout_days, int) and 0 <= washout_days <= MAX_WASHOUT_DAYS
    ):
        raise StudyError(f"The washout is 0 to {MAX_WASHOUT_DAYS} days, got {washout_days!r}.")
    shams = list(shams or [])
    if shams and not blinded:
        raise StudyError("Sham panels need a blinded study: raters must not tell them apart.")
    unknown = [m for m in shams if m not in methods]
    if unknown or len(set(shams)) != len(shams):
        raise StudyError(f"Sham panels are for the study's own methods, once each: {unknown}.")
    for method in methods:  # a name or a variant with settings, checked before it is stored
        try:
            # not `name`: that is the study's name (every study was named after its last
            # method: "Newcomer pilot" was stored as "lrp")
            method_name, params = parse_variant(method)
            get_explainer(method_name, **params)
        except CxrxaiError as exc:
            raise StudyError(f"Method '{method}': {exc}") from exc
    code = new_study_code()
    with write_transaction(db):
        study_id = (
            db["studies"]
            .insert(
                {
                    "code": code,
                    "name": name.strip()[:200] or "study",
                    "mode": "blinded" if blinded else "open",
                    # every panel a case shows, shams among them (``sham:<method>``)
                    "methods": json.dumps([*methods, *(SHAM_PREFIX + m for m in shams)]),
                    "seed": int(seed),
                    "instructions": instructions[:MAX_COMMENT_CHARS],
                    "created_at": timestamp(),
                    "first_read": int(bool(first_read or staged)),
                    "staged": int(bool(staged)),
                    "washout_days": washout_days,
                    "explain": explain,
                    "prepare": int(bool(prepare)),
                    "localise": int(bool(localise)),
                }
            )
            .last_pk
        )
        practice = list(practice or [])
        if len(practice) > MAX_PRACTICE_CASES:
            raise StudyError(f"At most {MAX_PRACTICE_CASES} practice cases.")
        both = {c.case_id for c in cases} & {c.case_id for c in practice}
        if both:
            raise StudyError(
                f"Practice cases must not be study cases: {sorted(both)[:3]} are both."
            )
        db["study_cases"].insert_all(
            [
                {"study_id": study_id, "position": i, **c.__dict__}
                | {"model_correct": None if c.model_correct is None else int(c.model_correct)}
                | {"practice": int(i >= len(cases))}
                for i, c in enumerate([*cases, *practice])
            ]
        )
        audit(
            db,
            "admin",
            "create_study",
            study=code,
            cases=len(cases),
            methods=methods,
            first_read=bool(first_read),
        )
    return code


def invite_link(base_url: str, code: str) -> str:
    """A rater's invitation: the Study page of the server at ``base_url`` with the code."""
    return f"{base_url.rstrip('/')}/study?code={quote(code)}"
