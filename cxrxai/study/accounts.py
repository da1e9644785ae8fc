"""Accounts: the admin password (set, reset with a one-time setup code, checked, with sign-in
limits) and the raters (sign-in with a profile, resuming by personal link).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass

import sqlite_utils
from confusable_homoglyphs import confusables as homoglyphs

from cxrxai.sqlitedb import epoch_seconds, timestamp, write_transaction
from cxrxai.study.common import (
    StudyError,
    audit,
    study_by_code,
    token_hash,
)
from cxrxai.study.names import clean_name, look_alike_key, name_key
from cxrxai.study.protocol import rater_plan

PBKDF2_ITERATIONS = 200_000


MAX_PASSWORD_CHARS = 256


SETUP_CODE_SECONDS = 3600


SIGN_IN_LIMIT = 5  # failed attempts per session and minute


SIGN_IN_LIMIT_ALL = 20  # failed attempts over all sessions per minute


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
    db["settings"].delete_where("key like 'admin_session:%'")  # signed out everywhere
    audit(db, "admin", action)


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
            {"key": "admin_setup_code", "value": f"{expires}${token_hash(code)}"}, pk="key"
        )
        audit(db, "server", "new_setup_code")
    return code


def set_admin_password_with_code(
    db: sqlite_utils.Database, code: str, password: str, session: str
) -> None:
    """The first admin password, chosen in the browser by whoever holds the setup code
    printed in the server's log. Failed attempts are audited and throttled."""
    _check_new_password(password)
    throttle(db, session, "setup_code_failed")
    with write_transaction(db):
        if admin_password_set(db):
            raise StudyError("The admin password is already set; sign in with it.")
        rows = list(db["settings"].rows_where("key = 'admin_setup_code'"))
        expires, expected = rows[0]["value"].split("$") if rows else ("0", "")
        given = token_hash(code.strip().upper())
        if float(expires) < time.time() or not hmac.compare_digest(given, expected):
            audit(db, "anonymous", "setup_code_failed", session=session)
            failed = True
        else:
            _store_password(db, password, "set_admin_password")
            failed = False
    if failed:
        raise StudyError(
            "Wrong or expired setup code: use the newest code printed in the server's log "
            "(or set the password with 'python -m cxrxai study set-password' on the server)."
        )


def throttle(db: sqlite_utils.Database, session: str, action: str) -> None:
    """Refuse an attempt while this session has failed SIGN_IN_LIMIT times in the last
    minute, or every session together SIGN_IN_LIMIT_ALL times (a guesser opening new
    sessions); says how long to wait."""
    since = timestamp(time.time() - 60)
    recent = [
        (row["at"], json.loads(row["detail"]).get("session"))
        for row in db["audit"].rows_where("action = ? and at >= ?", [action, since])
    ]
    mine = [at for at, who in recent if who == session]
    if len(mine) >= SIGN_IN_LIMIT or len(recent) >= SIGN_IN_LIMIT_ALL:
        oldest = min(mine if len(mine) >= SIGN_IN_LIMIT else [at for at, _ in recent])
        wait = 60 - (time.time() - epoch_seconds(oldest))
        raise StudyError(f"Too many failed attempts; wait {max(1, round(wait))} s and try again.")


def check_admin(db: sqlite_utils.Database, password: str, session: str = "cli") -> None:
    """Sign in as admin. Failed attempts are audited and throttled: at most
    SIGN_IN_LIMIT a minute per session and SIGN_IN_LIMIT_ALL over all sessions."""
    throttle(db, session, "admin_sign_in_failed")
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
            audit(db, "anonymous", "admin_sign_in_failed", session=session)
        raise StudyError("Wrong admin password.")


ADMIN_SESSION_SECONDS = 8 * 3600  # a signed-in admin page stays signed in for a work day


@dataclass(frozen=True)
class AdminToken:
    """Proof of an admin sign-in, kept by the page instead of the password (a browser
    session's state must not hold it); only its hash is stored, for
    :data:`ADMIN_SESSION_SECONDS`, and a new password ends every token."""

    value: str

    def __repr__(self) -> str:  # never shown in a log or a traceback
        return "AdminToken(...)"


def sign_in_admin(db: sqlite_utils.Database, password: str, session: str = "cli") -> AdminToken:
    """:func:`check_admin`, then a token that stands for the password until it expires."""
    check_admin(db, password, session)
    token = secrets.token_urlsafe(32)
    with write_transaction(db):
        db["settings"].delete_where(
            "key like 'admin_session:%' and cast(value as integer) < ?", [int(time.time())]
        )
        db["settings"].insert(
            {
                "key": f"admin_session:{token_hash(token)}",
                "value": str(int(time.time()) + ADMIN_SESSION_SECONDS),
            }
        )
        audit(db, "admin", "admin_sign_in", session=session)
    return AdminToken(token)


def check_admin_token(db: sqlite_utils.Database, token: AdminToken) -> None:
    """That ``token`` is a live admin sign-in (:func:`sign_in_admin`)."""
    rows = list(
        db["settings"].rows_where("key = ?", [f"admin_session:{token_hash(str(token.value))}"])
    )
    if not rows or not str(rows[0]["value"]).isdigit() or int(rows[0]["value"]) < time.time():
        raise StudyError("The admin sign-in has expired; sign in again.")


def require_admin(db: sqlite_utils.Database, admin: str | AdminToken) -> None:
    """An admin's password (the CLI) or sign-in token (the page)."""
    if isinstance(admin, AdminToken):
        check_admin_token(db, admin)
    else:
        check_admin(db, admin)


MAX_NAME_CHARS = 60


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


@dataclass(frozen=True)
class Rater:
    id: int
    study_id: int
    name: str
    token: str  # secret: goes in the rater's personal link, stored hashed


def join(
    db: sqlite_utils.Database, code: str, name: str, profile: ReaderProfile | None = None
) -> Rater:
    """A new rater in the study with their assignments; their token resumes later.

    A name already taken in the study is refused (nobody can rate as someone else),
    compared by :func:`name_key`; a name mixing alphabets with look-alike letters
    ("Аlice" with a Cyrillic А) is refused, and so is one written wholly in another
    alphabet that looks like a rater's name already there ("ВОВ" next to "BOB",
    :func:`look_alike_key`): the owner resumes with :func:`resume` and their token.
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
    looks = look_alike_key(name)
    for (other,) in db.execute("select name from raters where study_id = ?", [study["id"]]):
        if name_key(other) != name_key(name) and look_alike_key(other) == looks:
            raise StudyError(
                "A rater whose name looks the same (in another alphabet) is already in this "
                "study; add an initial so that the two can be told apart."
            )
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
                        "token_hash": token_hash(token),
                        "created_at": timestamp(),
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
            audit(db, f"rater:{rater_id}", "join", study=study["code"])
    except sqlite3.IntegrityError as exc:
        raise StudyError(
            f"The name '{name}' is already taken in this study. If it is you, open your "
            "personal link to resume; otherwise add an initial."
        ) from exc
    return Rater(rater_id, study["id"], name, token)


def resume(db: sqlite_utils.Database, token: str) -> Rater:
    rows = list(db["raters"].rows_where("token_hash = ?", [token_hash(token or "")]))
    if not rows:
        raise StudyError("This personal link is not valid; sign in with the study code.")
    row = rows[0]
    return Rater(row["id"], row["study_id"], row["name"], token)
