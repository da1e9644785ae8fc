"""Researcher's view: every case x method of a batch evaluation, filtered and summarised,
with the qualitative picks one click away from the Review page."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cxrxai.csvout import csv_text
from cxrxai.datasets.registry import find_case
from cxrxai.environment import RESULTS_ENV_VAR, data_root, results_path
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation import browse
from cxrxai.evaluation.figures import box_by_class
from cxrxai.evaluation.report import iou_curve_figure
from cxrxai.evaluation.store import STALE_NOTE
from cxrxai.metrics.registry import COMPARED, METRICS
from cxrxai.render import plain
from dashboard.cases import compared_methods, filtered_frame, iou_curves, results_overview
from dashboard.router import through_the_router
from dashboard.shared import open_in_review

COLUMNS = (
    "case_id",
    "target",
    "method",
    "correct",
    "probability",
    "iou",
    "dice",
    "mean_distance",
    "hd95",
    "hit",
    "box_iou_mean",
    "lung_relevance",
    "border_relevance",
    "lung_source",
)  # the table's and the CSV's
EVALUATE = "`python -m cxrxai evaluate --split Val --methods gradcam,gradcam++,lrp`"


def results():  # -> (path, sidebar lists); the page stops without results
    """The results database to browse (an evaluation's, else the demo's) and what its
    sidebar lists."""
    path, is_demo = browse.results_to_browse()
    if path is None:
        st.info(
            f"No evaluation results at `{results_path()}` yet. Compute them "
            f"with\n\n{EVALUATE}\n\nor point `{RESULTS_ENV_VAR}` at a results database."
        )
        st.stop()
    if is_demo:
        st.info(
            "Showing the demo evaluation: the curated demo cases only. For a whole split, run"
            f"\n\n{EVALUATE}\n\n(it writes `{results_path()}`, which this page "
            f"then opens) or point `{RESULTS_ENV_VAR}` at a results database."
        )
    stale, settings, targets, methods_found = results_overview(path)
    if stale:
        st.warning(STALE_NOTE.format(n=stale))
    if not settings:
        st.info(f"{plain(path)} holds no results yet.")
        st.stop()
    return path, settings, targets, methods_found


def sidebar_filters(settings, targets, methods_found) -> browse.Filters:
    with st.sidebar:
        labels = [f"{mode} {value:g}" for mode, value in settings]
        default = labels.index("top-percent 10") if "top-percent 10" in labels else 0
        mode, value = settings[labels.index(st.selectbox("Region setting", labels, index=default))]
        classes = st.multiselect("Class", targets)
        methods = st.multiselect("Method", methods_found)
        correctness = st.radio("Prediction", ["all", "correct", "incorrect"], horizontal=True)
        iou_min, iou_max = st.slider("IoU range", 0.0, 1.0, (0.0, 1.0), 0.01)
        missing = st.toggle("Include cases without an IoU", value=True)
        flag = st.radio(
            "Shortcut flag",
            ["all", "flagged", "not flagged"],
            horizontal=True,
            help="flagged: most of the map's positive relevance lies outside the lungs "
            "(the case's lung mask, else the lung-field model's)",
        )

    filters = browse.Filters(
        mode,
        value,
        tuple(classes),
        tuple(methods),
        {"all": None, "correct": True, "incorrect": False}[correctness],
        iou_min,
        iou_max,
        missing,
        {"all": None, "flagged": True, "not flagged": False}[flag],
    )
    return filters


def table(path, filters: browse.Filters):  # -> browse.Frame, the filtered rows
    """The filtered rows (the first of them shown), a selected row's way to Review, the CSV."""
    rows = filtered_frame(path, filters)
    shown = rows.records(COLUMNS, browse.TABLE_ROWS)
    st.caption(
        f"{len(rows):,} rows · {plain(path)}"
        + (
            f" · the table shows the first {len(shown):,} (by case): narrow the filters, or "
            "download them all below"
            if len(shown) < len(rows)
            else ""
        )
    )
    selection = st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="cases-table",
    )
    # a selection kept from before a filter change may point past the shorter table
    chosen = [i for i in (selection.selection.rows if selection else []) if i < len(shown)]
    if chosen:
        row = rows.row(chosen[0])
        label = f"Open {row['case_id']} in Review ({row['method']} for {row['target']})"
        if st.button(label, key="open-selected"):
            case = find_case(row["dataset"], row["split"], row["case_id"], data_root())
            if case is None:
                st.error(plain(f"Case '{row['case_id']}' was not found under {data_root()}."))
            else:
                try:
                    open_in_review(case, row["target"], row["method"])
                except CxrxaiError as exc:  # a method this version does not know
                    st.error(plain(f"Cannot open it in Review: {exc}"))
    else:
        st.caption("Select a row to open that case in Review with its method and label.")
    st.download_button(
        f"Download the filtered table (CSV, {len(rows):,} rows)",
        lambda: csv_text(rows.records(COLUMNS), COLUMNS),  # encoded on click
        file_name="cases.csv",
        mime="text/csv",
    )
    return rows


def figures(path, filters: browse.Filters, rows) -> None:
    """The box plot, the methods' paired comparison and IoU versus p."""
    mode, value = filters.mode, filters.value
    scored = rows.take(~np.isnan(rows.numbers("iou")))
    if len(scored):
        st.subheader(f"IoU per class and method ({mode} {value:g})")
        drawn = browse.sample_frame(scored, browse.PLOT_POINTS)
        st.plotly_chart(box_by_class(drawn), width="stretch")
        if len(drawn) < len(scored):
            st.caption(
                f"Drawn from a random {len(drawn):,} of the {len(scored):,} rows with an IoU."
            )
    if len(set(rows.column("method"))) >= 2:
        st.subheader("Methods compared on the same cases")
        metric = st.selectbox(
            "Compare on", COMPARED, format_func=lambda m: METRICS[m].label, key="compare-metric"
        )
        table = compared_methods(path, filters, metric)
        st.dataframe(table, hide_index=True, width="stretch")
        st.caption(
            "Per class, first minus second method on the cases both were scored on: mean "
            "difference with a paired bootstrap 95 % CI, two-sided Wilcoxon signed-rank p, "
            "Holm-adjusted over the class's pairs; 'better' only where the CI excludes 0 and "
            f"the Holm p is below 0.05 ({METRICS[metric].direction}). The IoU range filter is "
            "not applied here."
        )
    curves = iou_curves(path)
    if curves:
        st.subheader("IoU versus p")
        st.plotly_chart(iou_curve_figure(curves), width="stretch")


def picks(rows) -> None:
    st.subheader("Qualitative picks per class")
    for i, pick in enumerate(browse.qualitative_picks(rows)):
        text, action = st.columns([4, 1])
        text.write(f"**{pick.target}** · {pick.kind}: `{pick.case_id}` — {pick.detail}")
        if action.button("Open in Review", key=f"pick-{i}"):
            case = find_case(pick.dataset, pick.split, pick.case_id, data_root())
            if case is None:
                st.error(plain(f"Case '{pick.case_id}' was not found under {data_root()}."))
            else:
                open_in_review(case, pick.target)


def main() -> None:
    through_the_router()
    st.title("Cases")
    path, settings, targets, methods_found = results()
    filters = sidebar_filters(settings, targets, methods_found)
    rows = table(path, filters)
    figures(path, filters, rows)
    picks(rows)


main()
