"""The Review page's address: what it shows round-trips through query parameters, and a
hostile or broken address becomes messages, never an exception."""

from __future__ import annotations

from cxrxai.evaluation.address import MAX_METHODS, ReviewAddress, from_query
from cxrxai.explain.params import check_params


def _reader(query: dict[str, str | list[str]]):
    def get_all(name: str) -> list[str]:
        value = query.get(name, [])
        return [value] if isinstance(value, str) else list(value)

    return get_all


def test_round_trip_with_settings():
    address = ReviewAddress(
        "covid-qu-ex/Val/COVID-19/covid_1",
        "COVID-19",
        ["gradcam", "shap"],
        {"gradcam": {"layer": "blocks.5"}, "shap": {"masker": "blur(5,5)", "n_samples": 50}},
    )
    query = address.query()
    assert query["method"] == ["gradcam(layer=blocks.5)", "shap(masker=blur(5,5), n_samples=50)"]
    again = from_query(_reader(query), check_params)
    assert (again.case_id, again.label, again.methods) == (
        address.case_id,
        "COVID-19",
        ["gradcam", "shap"],
    )
    assert again.params == address.params and again.problems == []


def test_hostile_addresses_become_messages():
    query = {
        "case": "x" * 10_000,
        "label": "COVID-19\x00",
        "method": ["nosuchmethod", "gradcam(layer=", "lime(n_samples=-5)", "gradcam", "gradcam"]
        + ["lrp"] * MAX_METHODS,
    }
    address = from_query(_reader(query), check_params)
    assert address.case_id is None and address.label is None
    assert address.methods == ["gradcam", "lrp"]  # duplicates once, the broken ones left out
    text = " | ".join(address.problems)
    assert "'case' is not a valid value" in text and "'label' is not a valid value" in text
    assert "nosuchmethod" in text and "lime(n_samples=-5)" in text
    assert f"the first {MAX_METHODS} are shown" in text
    assert from_query(_reader({}), check_params) == ReviewAddress()
