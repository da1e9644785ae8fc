"""The Cases page's reads of a results database, cached per database version.

Only glue lives here: every computation is a ``cxrxai`` call.
"""

from __future__ import annotations

import streamlit as st

from dashboard.shared import file_versions as _versions


def compared_methods(path, filters, metric: str) -> list[dict]:
    """The Cases page's paired comparison of methods, recomputed only when the results
    database or the choice changes, not on every widget change elsewhere on the page:
    a whole split's pairs are bootstrapped, and SciPy's Wilcoxon is an exact permutation
    test for small samples with ties."""
    return _compared_methods(str(path), _versions(path), filters, metric)


def filtered_frame(path, filters):  # -> browse.Frame
    """The Cases page's rows: the region setting's rows, read once per database version
    (a whole split: 400,000 rows), narrowed by the filters on arrays. Shared, not copied:
    read-only."""
    return _filtered_frame(str(path), _versions(path), filters)


def results_overview(path) -> tuple[int, list, list[str], list[str]]:
    """What the Cases page's sidebar lists - rows of an older metrics definition, region
    settings, classes, methods - from the database's summaries (four full scans of the
    rows, once per state of the rows)."""
    return _results_overview(str(path), _versions(path))


@st.cache_data(max_entries=8)
def _results_overview(path: str, versions: tuple[int, ...]) -> tuple[int, list, list, list]:
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.store import open_results

    return summaries.overview(open_results(path))


def iou_curves(path) -> dict:
    """IoU versus p with bootstrap CIs, read from the database's summaries (computed there
    once per state of the rows: a bootstrap per method, class and p)."""
    return _iou_curves(str(path), _versions(path))


@st.cache_data(show_spinner="Bootstrapping IoU versus p…", max_entries=8)
def _iou_curves(path: str, versions: tuple[int, ...]) -> dict:
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.store import open_results

    return summaries.iou_curves(open_results(path))


@st.cache_resource(show_spinner="Reading the results…", max_entries=4)
def _setting_frame(path: str, versions: tuple[int, ...], mode: str, value: float):
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.store import open_results

    return summaries.setting_frame(open_results(path), mode, value)


@st.cache_resource(max_entries=16)
def _filtered_frame(path: str, versions: tuple[int, ...], filters):
    from cxrxai.evaluation import browse

    return browse.filter_frame(_setting_frame(path, versions, filters.mode, filters.value), filters)


@st.cache_data(show_spinner="Comparing the methods…", max_entries=32)
def _compared_methods(path: str, versions: tuple[int, ...], filters, metric: str) -> list[dict]:
    # ``versions`` (file modification times) is only part of the cache key
    from cxrxai.evaluation import browse, summaries
    from cxrxai.evaluation.store import open_results

    # the setting's rows the page read already, not read again
    frame = _setting_frame(path, versions, filters.mode, filters.value)
    db = open_results(path)
    if summaries.is_unfiltered(filters):  # kept in the database once computed
        return summaries.comparison(db, filters.mode, filters.value, metric, frame)
    return browse.compared_methods(db, filters, metric, frame)
