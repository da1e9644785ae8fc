"""What the Review page shows, as the address bar's query parameters, so a case can be
bookmarked, shared and reloaded:

    ?case=covid-qu-ex/Val/COVID-19/covid_1&label=COVID-19&method=gradcam&method=lrp(...)

``method`` repeats, one method each, with its settings as a variant name
(:func:`cxrxai.explain.params.variant`, which round-trips any value). Everything read
from an address is checked: an unknown method or a bad setting becomes a message, never
an exception, and text is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxrxai.errors import CxrxaiError
from cxrxai.explain.params import parse_variant, variant

MAX_TEXT = 500  # longest case id or label taken from an address
MAX_METHODS = 12


@dataclass
class ReviewAddress:
    case_id: str | None = None
    label: str | None = None
    methods: list[str] = field(default_factory=list)  # names, in order
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method name
    problems: list[str] = field(default_factory=list)  # what was left out, and why

    def query(self) -> dict[str, str | list[str]]:
        """The query parameters (for ``st.query_params.from_dict``)."""
        out: dict[str, str | list[str]] = {}
        if self.case_id:
            out["case"] = self.case_id
        if self.label:
            out["label"] = self.label
        if self.methods:
            out["method"] = [variant(m, self.params.get(m, {})) for m in self.methods]
        return out


def _text(value: object, name: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not text or len(text) > MAX_TEXT or any(ord(ch) < 32 for ch in text):
        problems.append(f"the address's '{name}' is not a valid value; it was left out")
        return None
    return text


def from_query(
    get_all: Callable[[str], Sequence[str]], check: Callable[[str, Mapping[str, Any]], None]
) -> ReviewAddress:
    """Read an address: ``get_all(name)`` lists a parameter's values (``st.query_params
    .get_all``); ``check(method, params)`` raises CxrxaiError for an unknown method or
    setting (the explainer's own checks)."""
    problems: list[str] = []
    case_values, label_values = list(get_all("case")), list(get_all("label"))
    address = ReviewAddress(
        _text(case_values[-1] if case_values else None, "case", problems),
        _text(label_values[-1] if label_values else None, "label", problems),
    )
    methods = list(get_all("method"))
    if len(methods) > MAX_METHODS:
        problems.append(
            f"the address names {len(methods)} methods; the first {MAX_METHODS} are shown"
        )
    for text in methods[:MAX_METHODS]:
        try:
            name, params = parse_variant(str(text)[:MAX_TEXT])
            check(name, params)
        except (CxrxaiError, ValueError) as exc:
            problems.append(f"method '{str(text)[:80]}' from the address was left out: {exc}")
            continue
        if name not in address.methods:
            address.methods.append(name)
            address.params[name] = dict(params)
    address.problems = problems
    return address
