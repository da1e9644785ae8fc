"""What the study's operations share: their error, the clock and the audit log, study codes and
the lookup of a study by code, the label the panels explain, and the limits on free text.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from cxrxai.card import ModelCard
from cxrxai.errors import CxrxaiError
from cxrxai.sqlitedb import timestamp

MAX_COMMENT_CHARS = 5000


MAX_DISPLAY_CHARS = 2000


class StudyError(CxrxaiError):
    """A request the study refuses (bad input, wrong code, forged id, no permission)."""


def audit(db: sqlite_utils.Database, actor: str, action: str, **detail: Any) -> None:
    db["audit"].insert(
        {"at": timestamp(), "actor": actor, "action": action, "detail": json.dumps(detail)}
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


def study_by_code(db: sqlite_utils.Database, code: str) -> dict[str, Any]:
    rows = list(db["studies"].rows_where("code = ?", [normalise_code(code or "")]))
    if not rows:
        raise StudyError("No study has this code; check the code you were given.")
    study = rows[0]
    study["methods"] = json.loads(study["methods"])
    return study


def explained_label(
    study: dict[str, Any], reference: str, card: ModelCard, probabilities: Sequence[float]
) -> tuple[str, str]:
    """The label a case's panels explain, and why: the model's prediction
    (:meth:`ModelCard.explained_by_default`, the rule of the Review page) for studies that
    explain predictions, else the case's reference label."""
    if study.get("explain", "reference") == "prediction":
        return card.labels[card.explained_by_default(probabilities)], "the model's prediction"
    return reference, "the case's reference label"
