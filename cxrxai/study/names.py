"""Raters' names: how one is shown, and when two are the same rater."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import confusables


def clean_name(name: str) -> str:
    """A name as shown: Unicode NFKC (full-width and compatibility forms folded),
    invisible and control characters removed (zero-width spaces, direction marks), any
    whitespace (tabs, line breaks) a single space."""
    text = unicodedata.normalize("NFKC", name if isinstance(name, str) else "")
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cf", "Cc", "Co")
    )  # a tab or line break between words is a space, not nothing
    return " ".join(text.split())


def name_key(name: str) -> str:
    """What makes two names the same rater: the cleaned name, case-folded ("alice",
    "ALICE" and "Al\\u200bice" are one)."""
    return clean_name(name).casefold()


@lru_cache(maxsize=4096)
def _latin_look_alike(char: str) -> str:
    """The Latin letter ``char`` is confused with (itself when none): Cyrillic 'В' -> 'B'."""
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"])
    for entry in found or []:
        for glyph in entry["homoglyphs"]:
            if glyph["n"].startswith("LATIN"):
                return glyph["c"]
    return char


def look_alike_key(name: str) -> str:
    """What a name looks like: each letter replaced by the Latin letter it is confused with,
    case-folded - so "ВОВ" in Cyrillic and "BOB" in Latin, which a reader of the admin's
    table or an export cannot tell apart, have one key (names that mix alphabets are
    refused before this, see :func:`cxrxai.study.accounts.join`)."""
    return "".join(_latin_look_alike(char) for char in clean_name(name)).casefold()
