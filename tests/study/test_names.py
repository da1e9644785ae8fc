"""Raters' names: how one is shown, when two are the same rater, when two look alike."""

from __future__ import annotations

import pytest

from cxrxai.study.names import clean_name, look_alike_key, name_key


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("  Dr   Alice\tSmith ", "Dr Alice Smith"),  # whitespace collapsed
        ("Al\u200bice", "Alice"),  # zero-width space (format character) removed
        ("\u202eecilA", "ecilA"),  # a right-to-left override removed, the text kept
        ("Bob\x07\x00", "Bob"),  # control characters removed
        ("ＢＯＢ", "BOB"),  # full-width letters folded by NFKC
        ("ﬁona", "fiona"),  # the 'fi' ligature folded
        ("Zoë", "Zoë"),  # a real accent kept
        (None, ""),  # not a string: nothing
    ],
)
def test_clean_name(typed, shown):
    assert clean_name(typed) == shown


def test_one_rater_whatever_the_case_or_invisible_characters():
    assert name_key("alice") == name_key("ALICE") == name_key("Al\u200bice") == "alice"
    assert name_key("Straße") == name_key("STRASSE")  # case folding, not lower()
    assert name_key("alice") != name_key("alicia")


def test_names_that_look_the_same_share_a_look_alike_key():
    cyrillic = "\u0412\u041e\u0412"  # В О В
    assert cyrillic != "BOB" and name_key(cyrillic) != name_key("BOB")
    assert look_alike_key(cyrillic) == look_alike_key("BOB") == look_alike_key("bob")
    greek = "\u0391\u039d\u039d\u0391"  # Α Ν Ν Α
    assert look_alike_key(greek) == look_alike_key("ANNA")
    assert look_alike_key("BOB") != look_alike_key("ROB")
