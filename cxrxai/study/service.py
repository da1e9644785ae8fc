"""Study operations: admin password, study set-up, rater sign-in, assignments, ratings.

Every write runs in one immediate transaction (:func:`write_transaction`) and appends to
the audit log in the same transaction.
Input is validated here, so the UI and the CLI give the same clear messages.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import json
import math
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlite_utils
from confusable_homoglyphs import confusables as homoglyphs

from cxrxai import __version__
from cxrxai.errors import CxrxaiError
from cxrxai.sqlitedb import write_transaction
from cxrxai.study.names import clean_name, name_key
from cxrxai.study.protocol import rater_plan, shown_labels
from cxrxai.study.sham import SHAM_PREFIX

MAX_COMMENT_CHARS = 5000
MAX_NAME_CHARS = 60
MAX_DISPLAY_CHARS = 2000
MAX_PRACTICE_CASES = 10
MAX_MARKS = 20
MAX_WASHOUT_DAYS = 365
EXPLAIN_CHOICES = ("prediction", "reference")
ROLES = ("radiologist", "resident", "other clinician", "non-clinician")
AI_EXPERIENCE = ("never", "occasionally", "regularly")
MAX_YEARS = 60


@dataclass(frozen=True)
class ReaderProfile:
    """Who a rater is (DECIDE-AI 3b): role, years of experience, prior use of AI tools."""

    role: str
    years_experience: int
    ai_experience: str

    def checked(self) -> ReaderProfile:
        if self.role not in ROLES:
            raise StudyError(f"Choose your role: one of {', '.join(ROLES)}.")
        if (
            isinstance(self.years_experience, bool)
            or not isinstance(self.years_experience, int)
            or not 0 <= self.years_experience <= MAX_YEARS
        ):
            raise StudyError(f"Years of experience: a whole number from 0 to {MAX_YEARS}.")
        if self.ai_experience not in AI_EXPERIENCE:
            raise StudyError(f"Prior use of AI tools: one of {', '.join(AI_EXPERIENCE)}.")
        return self


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


LIKERT = (1, 2, 3, 4, 5)
SCORES = ("trust", "localisation", "usefulness")
PBKDF2_ITERATIONS = 200_000
MAX_PASSWORD_CHARS = 256
SETUP_CODE_SECONDS = 3600
SIGN_IN_LIMIT = 5  # failed attempts per session and minute
SIGN_IN_LIMIT_ALL = 20  # failed attempts over all sessions per minute


class StudyError(CxrxaiError):
    """A request the study refuses (bad input, wrong code, forged id, no permission)."""


def _now() -> str:
    return timestamp(time.time())


def timestamp(epoch_seconds: float) -> str:
    """A moment as the study database stores it (UTC, seconds)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_seconds))


def _audit(db: sqlite_utils.Database, actor: str, action: str, **detail: Any) -> None:
    db["audit"].insert(
        {"at": _now(), "actor": actor, "action": action, "detail": json.dumps(detail)}
    )


# -- admin ---------------------------------------------------------------------------


def _hash_password(password: str, salt: bytes) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def admin_password_set(db: sqlite_utils.Database) -> bool:
    return db["settings"].count_where("key = 'admin_password'") > 0


def _check_new_password(password: str) -> None:
    if len(password) < 8:
        raise StudyError("The admin password needs at least 8 characters.")
    if len(password) > MAX_PASSWORD_CHARS:
        raise StudyError(f"The admin password may have at most {MAX_PASSWORD_CHARS} characters.")


def _store_password(db: sqlite_utils.Database, password: str, action: str) -> None:
    stored = _hash_password(password, secrets.token_bytes(16))
    db["settings"].upsert({"key": "admin_password", "value": stored}, pk="key")
    db["settings"].delete_where("key = 'admin_setup_code'")
    _audit(db, "admin", action)


def set_admin_password(db: sqlite_utils.Database, password: str, replace: bool = False) -> None:
    """Store a salted PBKDF2 hash (never the password, never logged). From a shell on the
    server (``study set-password``): whoever can run it there can also read the
    database, so ``replace`` resets a forgotten password. Over the network the first
    password needs the setup code (:func:`set_admin_password_with_code`)."""
    _check_new_password(password)
    with write_transaction(db):
        existing = admin_password_set(db)
        if existing and not replace:
            raise StudyError(
                "The admin password is already set; reset it with "
                "'python -m cxrxai study set-password' on the server."
            )
        _store_password(db, password, "reset_admin_password" if existing else "set_admin_password")


def new_setup_code(db: sqlite_utils.Database) -> str | None:
    """A one-time code for choosing the first admin password in the browser, for the
    server's log; None while an earlier one is still valid (a visitor cannot make the
    server print codes at will) or once a password is set. Only its hash is stored."""
    with write_transaction(db):
        if admin_password_set(db):
            return None
        rows = list(db["settings"].rows_where("key = 'admin_setup_code'"))
        if rows and float(rows[0]["value"].split("$")[0]) > time.time():
            return None
        code = "-".join(secrets.token_hex(3).upper() for _ in range(3))  # 72 bits
        expires = time.time() + SETUP_CODE_SECONDS
        db["settings"].upsert(
            {"key": "admin_setup_code", "value": f"{expires}${_token_hash(code)}"}, pk="key"
        )
        _audit(db, "server", "new_setup_code")
    return code


def set_admin_password_with_code(
    db: sqlite_utils.Database, code: str, password: str, session: str
) -> None:
    """The first admin password, chosen in the browser by whoever holds the setup code
    printed in the server's log. Failed attempts are audited and throttled."""
    _check_new_password(password)
    _throttle(db, session, "setup_code_failed")
    with write_transaction(db):
        if admin_password_set(db):
            raise StudyError("The admin password is already set; sign in with it.")
        rows = list(db["settings"].rows_where("key = 'admin_setup_code'"))
        expires, expected = rows[0]["value"].split("$") if rows else ("0", "")
        given = _token_hash(code.strip().upper())
        if float(expires) < time.time() or not hmac.compare_digest(given, expected):
            _audit(db, "anonymous", "setup_code_failed", session=session)
            failed = True
        else:
            _store_password(db, password, "set_admin_password")
            failed = False
    if failed:
        raise StudyError(
            "Wrong or expired setup code: use the newest code printed in the server's log "
            "(or set the password with 'python -m cxrxai study set-password' on the server)."
        )


def _throttle(db: sqlite_utils.Database, session: str, action: str) -> None:
    """Refuse an attempt while this session has failed SIGN_IN_LIMIT times in the last
    minute, or every session together SIGN_IN_LIMIT_ALL times (a guesser opening new
    sessions); says how long to wait."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 60))
    recent = [
        (row["at"], json.loads(row["detail"]).get("session"))
        for row in db["audit"].rows_where("action = ? and at >= ?", [action, since])
    ]
    mine = [at for at, who in recent if who == session]
    if len(mine) >= SIGN_IN_LIMIT or len(recent) >= SIGN_IN_LIMIT_ALL:
        oldest = min(mine if len(mine) >= SIGN_IN_LIMIT else [at for at, _ in recent])
        wait = 60 - (time.time() - calendar.timegm(time.strptime(oldest, "%Y-%m-%d %H:%M:%S")))
        raise StudyError(f"Too many failed attempts; wait {max(1, round(wait))} s and try again.")


def check_admin(db: sqlite_utils.Database, password: str, session: str = "cli") -> None:
    """Sign in as admin. Failed attempts are audited and throttled: at most
    SIGN_IN_LIMIT a minute per session and SIGN_IN_LIMIT_ALL over all sessions."""
    _throttle(db, session, "admin_sign_in_failed")
    rows = list(db["settings"].rows_where("key = 'admin_password'"))
    if not rows:
        raise StudyError(
            "No admin password yet: set it with 'python -m cxrxai study set-password' on "
            "the server, or with the setup code from the server's log on Study admin."
        )
    _, iterations, salt, digest = rows[0]["value"].split("$")
    candidate = hashlib.pbkdf2_hmac(
        "sha256", password[:MAX_PASSWORD_CHARS].encode(), bytes.fromhex(salt), int(iterations)
    ).hex()
    if not hmac.compare_digest(candidate, digest):
        with write_transaction(db):
            _audit(db, "anonymous", "admin_sign_in_failed", session=session)
        raise StudyError("Wrong admin password.")


# -- set-up ----------------------------------------------------------------------------


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
    admin_password: str,
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
    check_admin(db, admin_password)
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
                    "created_at": _now(),
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
        _audit(
            db,
            "admin",
            "create_study",
            study=code,
            cases=len(cases),
            methods=methods,
            first_read=bool(first_read),
        )
    return code


# Crockford's base32 alphabet: no I, L, O, U, so nothing is misread when typed.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_GROUPS, CODE_GROUP_CHARS = 4, 4  # 16 characters of 5 bits: 80 bits


def new_study_code() -> str:
    """A study code no one guesses (80 bits; the personal links are 128), grouped for
    typing: ``7K2M-XQ4D-9RTB-HC3W``. (Codes were 24 bits, which the service could check
    34,000 times a second.)"""
    chars = [secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUPS * CODE_GROUP_CHARS)]
    return "-".join(
        "".join(chars[i : i + CODE_GROUP_CHARS]) for i in range(0, len(chars), CODE_GROUP_CHARS)
    )


def normalise_code(code: str) -> str:
    """A typed code as stored: upper case, grouped; spaces and missing dashes forgiven
    (codes of older studies, 6 characters, are kept as they are)."""
    compact = "".join(code.split()).replace("-", "").upper()[:64]
    size = CODE_GROUPS * CODE_GROUP_CHARS
    if len(compact) != size:
        return compact
    return "-".join(compact[i : i + CODE_GROUP_CHARS] for i in range(0, size, CODE_GROUP_CHARS))


def explained_label(
    study: dict[str, Any],
    reference: str,
    labels: list[str],
    positives: list[int],
    probabilities: Any,
) -> tuple[str, str]:
    """The label a case's panels explain, and why: the model's prediction (the most
    probable label it calls positive, else its most probable label) for studies that
    explain predictions, else the case's reference label."""
    if study.get("explain", "reference") == "prediction":
        chosen = positives or range(len(labels))
        best = max(chosen, key=lambda i: probabilities[i])
        return labels[best], "the model's prediction"
    return reference, "the case's reference label"


def invite_link(base_url: str, code: str) -> str:
    """A rater's invitation: the Study page of the server at ``base_url`` with the code."""
    return f"{base_url.rstrip('/')}/study?code={quote(code)}"


def study_by_code(db: sqlite_utils.Database, code: str) -> dict[str, Any]:
    rows = list(db["studies"].rows_where("code = ?", [normalise_code(code or "")]))
    if not rows:
        raise StudyError("No study has this code; check the code you were given.")
    study = rows[0]
    study["methods"] = json.loads(study["methods"])
    return study


# -- raters ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rater:
    id: int
    study_id: int
    name: str
    token: str  # secret: goes in the rater's personal link, stored hashed


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def join(
    db: sqlite_utils.Database, code: str, name: str, profile: ReaderProfile | None = None
) -> Rater:
    """A new rater in the study with their assignments; their token resumes later.

    A name already taken in the study is refused (nobody can rate as someone else),
    compared by :func:`name_key`; a name mixing alphabets with look-alike letters
    ("Аlice" with a Cyrillic А) is refused: the owner resumes with :func:`resume`
    and their token.
    """
    name = clean_name(name)
    if not name or len(name) > MAX_NAME_CHARS:
        raise StudyError(f"Enter your name (1 to {MAX_NAME_CHARS} characters).")
    profile = profile.checked() if profile is not None else None
    if homoglyphs.is_dangerous(name):
        raise StudyError(
            "Your name mixes letters of different alphabets that look alike (such as a "
            "Cyrillic 'А' among Latin letters); type it in one alphabet."
        )
    study = study_by_code(db, code)
    token = secrets.token_urlsafe(16)
    try:
        with write_transaction(db):
            index = db["raters"].count_where("study_id = ?", [study["id"]])
            rater_id = (
                db["raters"]
                .insert(
                    {
                        "study_id": study["id"],
                        "name": name,
                        "name_key": name_key(name),
                        "role": profile.role if profile else None,
                        "years_experience": profile.years_experience if profile else None,
                        "ai_experience": profile.ai_experience if profile else None,
                        "token_hash": _token_hash(token),
                        "created_at": _now(),
                        "pseudonym": f"R{index + 1:02d}",
                    }
                )
                .last_pk
            )
            rows = list(
                db["study_cases"].rows_where("study_id = ?", [study["id"]], order_by="position")
            )
            practice = [c for c in rows if c.get("practice")]
            cases = [c for c in rows if not c.get("practice")]
            methods = list(study["methods"])
            # practice first, in the study's method order; then the counterbalanced plan
            proper = rater_plan(len(cases), study["methods"], study["seed"], index)
            plan = [(c, methods, 1, 1, "with") for c in practice]
            crossover = study.get("washout_days") is not None
            for session in (1, 2) if crossover else (1,):
                for i, (case, order) in enumerate(proper):
                    # crossover: alternate cases with and without explanations, swapped in
                    # session two and between consecutive raters
                    aided = not crossover or (i + index + session) % 2 == 0
                    plan.append((cases[case], order, 0, session, "with" if aided else "without"))
            db["assignments"].insert_all(
                [
                    {
                        "study_id": study["id"],
                        "rater_id": rater_id,
                        "position": i,
                        "case_id": case["case_id"],
                        "dataset": case["dataset"],
                        "split": case["split"],
                        "target": case["target"],
                        "methods_order": json.dumps(order),
                        "practice": is_practice,
                        "session": session,
                        "condition": condition,
                    }
                    for i, (case, order, is_practice, session, condition) in enumerate(plan)
                ]
            )
            _audit(db, f"rater:{rater_id}", "join", study=study["code"])
    except sqlite3.IntegrityError as exc:
        raise StudyError(
            f"The name '{name}' is already taken in this study. If it is you, open your "
            "personal link to resume; otherwise add an initial."
        ) from exc
    return Rater(rater_id, study["id"], name, token)


def resume(db: sqlite_utils.Database, token: str) -> Rater:
    rows = list(db["raters"].rows_where("token_hash = ?", [_token_hash(token or "")]))
    if not rows:
        raise StudyError("This personal link is not valid; sign in with the study code.")
    row = rows[0]
    return Rater(row["id"], row["study_id"], row["name"], token)


# -- rating ----------------------------------------------------------------------------


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
    last = calendar.timegm(time.strptime(row[0], "%Y-%m-%d %H:%M:%S"))  # stored as UTC
    opens = last + 86400 * int(study.get("washout_days") or 0)
    return None if time.time() >= opens else timestamp(opens)


def _own_assignment(db: sqlite_utils.Database, rater: Rater, assignment_id: int) -> dict:
    """The assignment, when it is this rater's (their token checked); else StudyError."""
    if resume(db, rater.token).id != rater.id:
        raise StudyError("This assignment is not yours.")
    rows = list(db["assignments"].rows_where("id = ? and rater_id = ?", [assignment_id, rater.id]))
    if not rows:
        raise StudyError("This assignment is not yours.")
    return rows[0]


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
            _audit(db, f"rater:{rater.id}", action, assignment=assignment["id"])
    except sqlite3.IntegrityError:
        return False
    return True


def needs_image_read(db: sqlite_utils.Database, assignment: Assignment) -> bool:
    """Whether a staged study still needs the rater's read of the image alone."""
    study = db["studies"].get(db["assignments"].get(assignment.id)["study_id"])
    if not study.get("staged"):
        return False
    return db["image_reads"].count_where("assignment_id = ?", [assignment.id]) == 0


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
    assignment = _own_assignment(db, rater, assignment_id)
    if label not in labels:
        raise StudyError("Choose your reading of the image: one of the offered labels.")
    read = {
        "label": label,
        "confidence": checked_confidence(confidence, required=True),
        "seconds": _seconds(seconds, "Time on the image alone"),
        "at": _now(),
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
    assignment = _own_assignment(db, rater, assignment_id)
    if agrees_with_model not in (True, False):
        raise StudyError("Answer yes or no: do you agree with the model's diagnosis?")
    study = db["studies"].get(assignment["study_id"])
    if study.get("staged") and not db["image_reads"].count_where(
        "assignment_id = ?", [assignment_id]
    ):
        raise StudyError("Give your reading of the image alone first.")
    read = {
        "agrees_with_model": int(agrees_with_model),
        "at": _now(),
        "seconds": _seconds(seconds, "Time on the first read"),
        "confidence": checked_confidence(confidence, require_confidence),
    }
    return _store_once(db, "first_reads", rater, assignment, read, "first_read")


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
            "map_seconds": _seconds(self.seconds, "A map's compute time"),
            "map_cached": int(bool(self.cached)),
        }


def _seconds(value: float | None, what: str) -> float | None:
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
    assignment = _own_assignment(db, rater, assignment_id)  # the token must be its rater's
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
    seconds_on_case = _seconds(seconds_on_case, "Time on case")
    wait_seconds = _seconds(wait_seconds, "Waiting time")
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
                "started_at": started_at or _now(),
                "submitted_at": _now(),
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
                        "at": _now(),
                    }
                    for box in marks.boxes
                )
            _audit(db, f"rater:{rater.id}", "rate", assignment=assignment_id, panels=len(records))
    except sqlite3.IntegrityError:
        return 0  # already rated: keep the first submission
    return len(records)


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
