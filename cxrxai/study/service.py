"""The study's operations, one face for the pages and the CLI: admin password and raters
(:mod:`~cxrxai.study.accounts`), study set-up (:mod:`~cxrxai.study.administration`),
assignments and progress (:mod:`~cxrxai.study.assignment`), reads and ratings
(:mod:`~cxrxai.study.submission`), and what they share (:mod:`~cxrxai.study.common`).

Every write runs in one immediate transaction (:func:`write_transaction`) and appends to
the audit log in the same transaction. Input is validated there, so the UI and the CLI
give the same clear messages.
"""

from __future__ import annotations

from cxrxai import __version__
from cxrxai.study.accounts import (
    AI_EXPERIENCE,
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    MAX_YEARS,
    PBKDF2_ITERATIONS,
    ROLES,
    SETUP_CODE_SECONDS,
    SIGN_IN_LIMIT,
    SIGN_IN_LIMIT_ALL,
    Rater,
    ReaderProfile,
    admin_password_set,
    check_admin,
    join,
    new_setup_code,
    resume,
    set_admin_password,
    set_admin_password_with_code,
)
from cxrxai.study.administration import (
    EXPLAIN_CHOICES,
    MAX_PRACTICE_CASES,
    MAX_WASHOUT_DAYS,
    CaseRef,
    create_study,
    invite_link,
)
from cxrxai.study.assignment import (
    Assignment,
    needs_first_read,
    needs_image_read,
    next_assignment,
    progress,
    session_opens,
)
from cxrxai.study.common import (
    CODE_ALPHABET,
    CODE_GROUPS,
    MAX_COMMENT_CHARS,
    MAX_DISPLAY_CHARS,
    StudyError,
    explained_label,
    new_study_code,
    normalise_code,
    study_by_code,
    timestamp,
)
from cxrxai.study.submission import (
    LIKERT,
    MAX_MARKS,
    SCORES,
    MapRecord,
    Marks,
    checked_confidence,
    record_first_read,
    record_image_read,
    submit,
)

__all__ = [
    "AI_EXPERIENCE",
    "CODE_ALPHABET",
    "CODE_GROUPS",
    "EXPLAIN_CHOICES",
    "LIKERT",
    "MAX_COMMENT_CHARS",
    "MAX_DISPLAY_CHARS",
    "MAX_MARKS",
    "MAX_NAME_CHARS",
    "MAX_PASSWORD_CHARS",
    "MAX_PRACTICE_CASES",
    "MAX_WASHOUT_DAYS",
    "MAX_YEARS",
    "PBKDF2_ITERATIONS",
    "ROLES",
    "SCORES",
    "SETUP_CODE_SECONDS",
    "SIGN_IN_LIMIT",
    "SIGN_IN_LIMIT_ALL",
    "Assignment",
    "CaseRef",
    "MapRecord",
    "Marks",
    "Rater",
    "ReaderProfile",
    "StudyError",
    "__version__",
    "admin_password_set",
    "check_admin",
    "checked_confidence",
    "create_study",
    "explained_label",
    "invite_link",
    "join",
    "needs_first_read",
    "needs_image_read",
    "new_setup_code",
    "new_study_code",
    "next_assignment",
    "normalise_code",
    "progress",
    "record_first_read",
    "record_image_read",
    "resume",
    "session_opens",
    "set_admin_password",
    "set_admin_password_with_code",
    "study_by_code",
    "submit",
    "timestamp",
]
