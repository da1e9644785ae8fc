"""Raters' names: how one is shown, and when two are the same rater."""

from __future__ import annotations

import unicodedata


def clean_name(name: str) -> str:
    """A name as shown: Unicode NFKC (full-width and compatibility forms folded),
    invisible and control characters removed (zero-width spaces, direction marks),
    whitespace collapsed."""
    text = unicodedata.normalize("NFKC", name if isinstance(name, str) else "")
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Co"))
    return " ".join(text.split())


def name_key(name: str) -> str:
    """What makes two names the same rater: the cleaned name, case-folded ("alice",
    "ALICE" and "Al\\u200bice" are one)."""
    return clean_name(name).casefold()
