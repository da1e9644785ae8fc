"""The study pages' own resources: study cases by reference, the candidates' predictions, the
study's findings, the evaluation's picks and variants.

Only glue lives here: every computation is a ``cxrxai`` call.
"""

from __future__ import annotations

import streamlit as st

from cxrxai.cases import Case
from cxrxai.environment import data_root, results_path
from cxrxai.runner import ModelBundle
from dashboard.shared import file_versions, get_demo_cases, get_image


@st.cache_resource(show_spinner=False, max_entries=256)
def case_from_ref(dataset: str, split: str, case_id: str) -> Case | None:
    """A case named by a study or an evaluation row, read from the data path (once: a
    case outside the demo set means listing its whole split)."""
    from cxrxai.datasets.registry import find_case

    demo = next((c for c in get_demo_cases(str(data_root())) if c.case_id == case_id), None)
    return demo or find_case(dataset, split, case_id, data_root())


@st.cache_data(show_spinner="Predicting the candidate cases…", max_entries=8)
def case_predictions(
    _bundle: ModelBundle, weights_sha256: str, refs: tuple
) -> list:  # -> list[CaseRef]
    """The candidate study cases with the model's predictions (once per model and list)."""
    from cxrxai.study.selection import with_predictions

    def pixels_of(ref):
        case = case_from_ref(ref.dataset, ref.split, ref.case_id)
        return get_image(str(case.image_path)).pixels

    known = [r for r in refs if case_from_ref(r.dataset, r.split, r.case_id) is not None]
    return with_predictions(_bundle, known, pixels_of)


ANALYSED = ("ratings", "first_reads", "reader_marks", "image_reads")  # what findings read


def study_findings(db, study: dict, rows: list):  # -> (ratings per method and class, findings)
    """The Study admin page's analysis of ``rows`` (:mod:`cxrxai.study.findings`: MRMC,
    agreement, bootstraps; trust versus IoU reads the whole results database), computed
    once per state of the study and results databases, not on every widget change."""
    results = results_path()
    # what the analysis reads only grows: the newest row of each table tells its state
    # (cheaper and finer than the file's modification time)
    state = tuple(
        db.execute(
            "select " + ", ".join(f"(select max(rowid) from {t})" for t in ANALYSED)
        ).fetchone()
    )
    return _study_findings(study["id"], state, str(results), file_versions(results), db, rows)


@st.cache_data(show_spinner="Analysing the ratings…", max_entries=16)
def _study_findings(
    study_id: int,
    study_state: tuple,
    results: str,
    results_versions: tuple[int, ...],
    _db,
    _rows: list,
):
    # the ids and file versions are the cache key; the connection and rows are not hashed
    from pathlib import Path

    from cxrxai.evaluation.browse import unit_values
    from cxrxai.evaluation.store import open_results
    from cxrxai.study.findings import findings, ratings_per

    study = _db["studies"].get(study_id)
    values = unit_values(open_results(results)) if Path(results).is_file() else None
    return ratings_per(_rows), findings(_db, study, _rows, values)


def show_findings(found: list) -> None:  # list[cxrxai.study.findings.Finding]
    """A study's findings: a headline number as a metric (side by side with the next
    one), a section as a title, a caption and its table. Their texts hold numbers and
    fixed words only; names (methods, readers) are in the tables, which show text as text."""
    index = 0
    while index < len(found):
        run = []
        while index < len(found) and found[index].value is not None and len(run) < 2:
            run.append(found[index])
            index += 1
        if run:
            for column, finding in zip(st.columns(len(run)), run, strict=True):
                column.metric(finding.title, finding.value, help=finding.text or None)
            continue
        finding = found[index]
        index += 1
        st.subheader(finding.title)
        if finding.text:
            st.caption(finding.text)
        if finding.table:
            st.dataframe(finding.table, hide_index=True)


def evaluation_picks():  # -> list[cxrxai.study.service.CaseRef]
    """The batch evaluation's qualitative picks as study cases (none without results)."""
    from cxrxai.evaluation import browse
    from cxrxai.evaluation.store import open_results
    from cxrxai.study.service import CaseRef

    path = results_path()
    if not path.is_file():
        return []
    rows = browse.filtered_rows(open_results(path), browse.Filters())
    picks = browse.qualitative_picks(rows)
    unique = {p.case_id: CaseRef(p.case_id, p.dataset, p.split, p.target) for p in picks}
    return list(unique.values())


def evaluated_variants() -> list[str]:
    """Method variants with settings (``gradcam(layer=blocks.6)``) in the batch evaluation,
    offered to a study beside the plain methods."""
    from cxrxai.evaluation import browse
    from cxrxai.evaluation.store import open_results

    path = results_path()
    if not path.is_file():
        return []
    return [m for m in browse.distinct(open_results(path), "method") if "(" in m]
