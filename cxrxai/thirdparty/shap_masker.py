"""shap's image masker, reused across calls. Building its partition tree is most of the
masker's cost, so one masker per image shape is kept and a shallow copy used per call; the
copy must not share the blur cache, which shap keys by ``id(x)`` - an id a new image can
reuse - in the private attributes reset here."""

from __future__ import annotations

import copy
from typing import Any


def fresh_copy(masker: Any) -> Any:
    """A shallow copy of a ``shap.maskers.Image`` with its per-image caches empty."""
    masker = copy.copy(masker)
    masker.last_xid = None
    masker._blur_value_cache = None
    return masker
