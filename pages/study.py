"""The rater's view of the trust study: sign in, rate each assignment, move on."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import streamlit as st

from cxrxai.cases import Case
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.drawing import boxes_from_selection, drawing_figure
from cxrxai.render import colour_legend, draw_annotations, overlay, plain
from cxrxai.runner import ModelBundle
from cxrxai.study import service
from cxrxai.study.marks import box_tuples, score_marks
from cxrxai.study.prepare import is_open, panel_map
from cxrxai.xray import XRayImage
from dashboard.router import through_the_router
from dashboard.shared import (
    explain_cached,
    get_image,
    get_probabilities,
    require_bundle,
    study_db,
    study_preparation,
)
from dashboard.study import case_from_ref


@dataclass(frozen=True)
class Reading:
    """The case a rater reads now, as the model sees it."""

    bundle: ModelBundle
    case: Case
    image: XRayImage
    probabilities: np.ndarray
    diagnosis: str
    explained: str  # the label the panels explain
    why: str


def signed_in_rater(db):  # -> service.Rater; the page stops until one signs in
    """The rater of the personal link, else a sign-in form."""
    token = st.query_params.get("rater")
    rater = None
    if token:
        try:
            rater = service.resume(db, token)
        except service.StudyError as exc:
            st.error(plain(str(exc)))
            st.query_params.clear()
    if rater is None:
        with st.form("sign-in"):
            st.write("Sign in with your name and the study code you were given.")
            name = st.text_input("Your name", max_chars=service.MAX_NAME_CHARS)
            # an invitation link may carry the code: /study?code=...
            code = st.text_input("Study code", value=st.query_params.get("code", ""), max_chars=40)
            st.caption("About you (reported with the study's results, as reporting standards ask):")
            role = st.selectbox("Your role", service.ROLES, index=None)
            years = st.number_input(
                "Years of experience reading chest X-rays", 0, service.MAX_YEARS, value=None, step=1
            )
            ai_use = st.radio(
                "Have you used AI tools in your work?", service.AI_EXPERIENCE, index=None,
                horizontal=True,
            )  # fmt: skip
            if st.form_submit_button("Start"):
                try:
                    years_given = None if years is None else int(years)
                    profile = service.ReaderProfile(role, years_given, ai_use)
                    rater = service.join(db, code, name, profile)
                except service.StudyError as exc:
                    st.error(plain(str(exc)))
                else:
                    st.query_params["rater"] = rater.token
                    st.rerun()
        st.stop()
    return rater


def welcome(db, rater) -> dict:
    """The rater's study, its instructions; the page stops while its maps are prepared."""
    study = db["studies"].get(rater.study_id)
    st.caption("Signed in as")
    st.text(rater.name)  # shown as text: never interpreted as markdown or HTML
    st.caption("Keep this page's address: it is your personal link to resume after a reload.")
    if study["instructions"]:
        with st.expander("Instructions", expanded=False):
            st.text(study["instructions"])

    ready, total = study_preparation(db, study, require_bundle())
    if not is_open(db, study["id"]):
        st.info(
            f"The study's explanations are being prepared ({ready} of {total} ready), so that "
            "no case makes you wait. Please come back in a few minutes; your link stays valid."
        )
        st.button("Check again")
        st.stop()
    return study


def next_task(db, rater, study: dict):  # -> service.Task; the page stops when none is due
    task = service.next_assignment(db, rater)
    if st.session_state.get("last_saved"):  # the previous case's acknowledgement, at the top:
        # the next case may stop early (a read before the explanations), or there is none
        st.success(plain(f"Ratings for {st.session_state['last_saved'].lower()} saved."))
    if task is None:
        st.success("All assignments are rated. Thank you!")
        st.stop()
    if opens := service.session_opens(db, rater, task):
        st.info(
            f"Session one is done, thank you. Your second session opens on {opens} UTC "
            f"(a washout of {study['washout_days']} day(s), so that the first reading is "
            "forgotten); come back then with your personal link."
        )
        st.stop()
    done = max(0, task.position - task.practice_total)
    st.progress(done / max(task.total, 1), text=task.heading)

    if task.practice:
        st.info(
            "A practice case, to get familiar with the panels and the scales before the study: "
            "rate it as you would any case; it is not part of the results."
        )
    return task


def reading(study: dict, task) -> Reading:
    """The task's case, its image and the model's prediction."""
    case = case_from_ref(task.dataset, task.split, task.case_id)
    if case is None:
        st.error(
            plain(f"Case '{task.case_id}' is not available on this machine; tell the study admin.")
        )
        st.stop()
    bundle = require_bundle()
    image = get_image(str(case.image_path))
    probabilities = np.array(get_probabilities(bundle, bundle.weights_sha256, image.pixels))
    diagnosis = bundle.card.diagnosis(probabilities, with_p=True)
    explained, why = service.explained_label(study, task.target, bundle.card, probabilities)
    return Reading(bundle, case, image, probabilities, diagnosis, explained, why)


def image_read(db, rater, task, read: Reading) -> None:
    """Staged reveal: the image alone, nothing of the model; the page stops."""
    bundle, image = read.bundle, read.image
    st.image(image.pixels, clamp=True, caption="The case", width=640)
    alone_shown = st.session_state.setdefault(f"alone-shown-{task.id}", time.time())
    with st.form(f"image-read-{task.id}"):
        own = st.radio("Your reading of this image", bundle.labels, index=None, horizontal=True)
        own_confidence = st.number_input(
            "Your confidence (0-100) in this reading", 0, 100, value=None, step=1
        )
        if st.form_submit_button("Continue"):
            try:
                service.record_image_read(
                    db, rater, task.id, own, bundle.labels, own_confidence,
                    seconds=time.time() - alone_shown,
                )  # fmt: skip
            except service.StudyError as exc:
                st.error(plain(str(exc)))
            else:
                st.rerun()
    st.stop()


def first_read(db, rater, task, read: Reading) -> None:
    """The read before any explanation (or a crossover's read without them); stops."""
    image, explained = read.image, read.explained
    st.image(image.pixels, clamp=True, caption="The case, before any explanation", width=640)
    first_shown = st.session_state.setdefault(f"first-shown-{task.id}", time.time())
    with st.form(f"first-read-{task.id}"):
        before = st.radio(
            "Before seeing any explanation: do you agree with the model's diagnosis?",
            ["yes", "no"],
            index=None,
            horizontal=True,
        )
        confidence_before = st.number_input(
            f"Your confidence (0-100) that {plain(explained)} is present",
            0, 100, value=None, step=1,
        )  # fmt: skip
        if st.form_submit_button(
            "Continue to the explanations" if task.aided else "Submit this read"
        ):
            try:
                service.record_first_read(
                    db,
                    rater,
                    task.id,
                    None if before is None else before == "yes",
                    seconds=time.time() - first_shown,
                    confidence=confidence_before,
                    require_confidence=True,
                )
            except service.StudyError as exc:
                st.error(plain(str(exc)))
            else:
                if not task.aided:  # a crossover's read without explanations: the case is done
                    st.session_state["last_saved"] = task.heading
                st.rerun()
    st.stop()


def marks_drawn(study: dict, task, read: Reading) -> list:
    """The rater's boxes where the finding is (localising studies)."""
    image, explained = read.image, read.explained
    drawn: list = []
    if study.get("localise"):
        st.write(f"**Mark where {plain(explained)} is:** drag a box on the image (Shift adds one).")
        event = st.plotly_chart(
            drawing_figure(draw_annotations(image.pixels, []), image.shape),
            on_select="rerun",
            selection_mode="box",
            key=f"marks-{task.id}",
            config={"displayModeBar": False},
        )
        drawn = boxes_from_selection((event or {}).get("selection"), image.shape, explained, "me")
        st.caption(f"{len(drawn)} box(es) marked." if drawn else "No box marked yet.")
    return drawn


def rating_form(db, rater, task, read: Reading, opacity: float, requested: float, drawn: list):
    """The panels with their scales, the decision and the comment; stored on submit."""
    bundle, case, image = read.bundle, read.case, read.image
    probabilities, explained = read.probabilities, read.explained
    scores: dict[str, dict[str, int | None]] = {}
    shown_maps: dict[str, service.MapRecord] = {}  # what each panel showed, kept with its rating
    shown_heatmaps: dict = {}  # method -> its map, to score the rater's marks against
    with st.form(f"rate-{task.id}"):
        columns = st.columns(len(task.methods))
        for column, method, label in zip(columns, task.methods, task.shown_as, strict=True):
            with column:
                try:
                    shown = panel_map(method, bundle.labels, probabilities, explained)
                    heatmap = explain_cached(
                        bundle, image.pixels, shown.method, shown.target, shown.params
                    )
                except CxrxaiError as exc:  # e.g. a layer the loaded model lacks
                    st.error(plain(f"Panel {label} cannot be shown: {exc} Tell the study admin."))
                    st.stop()
                shown_heatmaps[method] = heatmap
                shown_maps[method] = service.MapRecord(
                    heatmap.params, heatmap.seconds, heatmap.from_cache
                )
                values = heatmap.numpy()
                st.image(overlay(image.pixels, values, opacity), caption=f"Panel {label}")
                st.caption(colour_legend(values, heatmap.target_label))
                scores[label] = {
                    score: st.radio(
                        f"{score.capitalize()} ({label})",
                        service.LIKERT,
                        index=None,
                        horizontal=True,
                        key=f"{task.id}-{label}-{score}",
                    )
                    for score in service.SCORES
                }
        shown = st.session_state.setdefault(f"shown-{task.id}", time.time())  # every map drawn
        agrees = st.radio(
            "Do you agree with the model's diagnosis?", ["yes", "no"], index=None, horizontal=True
        )
        confidence = st.number_input(
            f"With the explanations: your confidence (0-100) that {plain(explained)} is present",
            0, 100, value=None, step=1,
        )  # fmt: skip
        comment = st.text_area("Comment (optional)", max_chars=service.MAX_COMMENT_CHARS)
        if st.form_submit_button("Submit ratings"):
            marks = None
            if drawn:
                reference, by_method = score_marks(
                    box_tuples(drawn), image.shape, case.annotations, explained, shown_heatmaps
                )
                marks = service.Marks(box_tuples(drawn), reference, by_method)
            try:
                stored = service.submit(
                    db,
                    rater,
                    task.id,
                    scores,  # type: ignore[arg-type]
                    None if agrees is None else agrees == "yes",
                    comment,
                    time.time() - shown,
                    {"opacity": opacity, "panels": task.shown_as},
                    started_at=service.timestamp(shown),
                    checkpoint_sha256=bundle.weights_sha256,
                    wait_seconds=shown - requested,
                    explained_label=explained,
                    confidence=confidence,
                    require_confidence=True,
                    maps=shown_maps,
                    marks=marks,
                )
            except service.StudyError as exc:
                st.error(plain(str(exc)))
            else:
                st.session_state["last_saved"] = task.heading if stored else None
                st.rerun()


def main() -> None:
    through_the_router()
    st.title("Explanation study")
    db = study_db()
    rater = signed_in_rater(db)
    study = welcome(db, rater)
    task = next_task(db, rater, study)
    read = reading(study, task)
    if service.needs_image_read(db, task):
        image_read(db, rater, task, read)
    st.write(f"**Model's diagnosis:** {plain(read.diagnosis)}")
    if service.needs_first_read(db, task):
        first_read(db, rater, task, read)
    st.write(f"**The panels explain:** {plain(read.explained)} ({read.why})")
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)
    # Time on task runs from when the panels are on screen; waiting for them is kept apart.
    requested = st.session_state.setdefault(f"requested-{task.id}", time.time())
    drawn = marks_drawn(study, task, read)
    rating_form(db, rater, task, read, opacity, requested, drawn)


main()
