"""Study administration: admin password, study set-up, progress, analysis and export."""

from __future__ import annotations

import secrets
import sys

import plotly.express as px
import streamlit as st

from cxrxai.csvout import csv_text
from cxrxai.environment import data_root, public_url
from cxrxai.explain.registry import METHODS
from cxrxai.render import plain
from cxrxai.study import analysis, service
from cxrxai.study.mrmc import IMRMC_FILE, imrmc_text
from cxrxai.study.selection import largest_pick
from dashboard.router import through_the_router
from dashboard.shared import get_demo_cases, require_bundle, server_url, study_db, study_preparation
from dashboard.study import (
    case_predictions,
    evaluated_variants,
    evaluation_picks,
    show_findings,
    study_findings,
)


def first_start(db, session: str) -> None:
    """No admin password yet: whoever reaches this page first must not own the study, so
    choosing the password takes the one-time code printed in the server's log (or a shell
    on the server)."""
    code = service.new_setup_code(db)
    if code is not None:
        sys.stderr.write(
            f"\ncxrxai: Study admin setup code (valid 1 hour, once): {code}\n"
            "        or set the password with: python -m cxrxai study set-password\n\n"
        )
        sys.stderr.flush()
    with st.form("first-start"):
        st.write(
            "No admin password yet. Enter the setup code printed in the server's log "
            "(where the dashboard was started) and choose the password, or set it on the "
            "server with `python -m cxrxai study set-password`."
        )
        setup_code = st.text_input("Setup code")
        first = st.text_input("Admin password", type="password")
        second = st.text_input("Repeat it", type="password")
        if st.form_submit_button("Set password"):
            if first != second:
                st.error("The two passwords differ.")
            else:

                def set_and_sign_in():  # signed in at once
                    service.set_admin_password_with_code(db, setup_code, first, session)
                    return service.sign_in_admin(db, first, session)

                _keep_sign_in(set_and_sign_in)
    st.stop()


def _keep_sign_in(sign_in) -> None:
    """Sign in (``sign_in()`` gives the token) and rerun signed in, or say why not. The
    session keeps the token, never the password."""
    try:
        token = sign_in()
    except service.StudyError as exc:
        st.error(plain(str(exc)))
    else:
        st.session_state["admin_token"] = token
        st.rerun()


def admin_token(db, session: str):  # -> service.AdminToken, or the page stops
    """The session's sign-in token, checked; a sign-in form (and a stop) without one."""
    token = st.session_state.get("admin_token")
    if token is not None:
        try:
            service.check_admin_token(db, token)
        except service.StudyError as exc:  # expired, or the password was changed
            st.session_state.pop("admin_token", None)
            st.warning(plain(str(exc)))
            token = None
    if token is None:
        with st.form("admin-login"):
            password = st.text_input("Admin password", type="password")
            if st.form_submit_button("Sign in"):
                _keep_sign_in(lambda: service.sign_in_admin(db, password, session))
        st.stop()
    return token


def create_form(db, token) -> None:
    """Create a study: its cases (the demo set or the evaluation's picks), methods and
    protocol."""
    bundle = require_bundle()
    with st.expander("Create a study", expanded=db["studies"].count == 0):
        source = st.radio(
            "Cases from",
            ["demo set", "batch evaluation picks"],
            horizontal=True,
            help="picks: per class the best-IoU, most confident and multi-label cases of "
            "results/evaluation.sqlite ($CXRXAI_RESULTS)",
        )
        if source == "demo set":
            refs = [
                service.CaseRef(
                    c.case_id,
                    c.dataset,
                    c.split,
                    next(label for label in c.labels if label in bundle.labels),
                )
                for c in get_demo_cases(str(data_root()))
                if set(c.labels) & set(bundle.labels)
            ]
        else:
            refs = evaluation_picks()
        refs = case_predictions(bundle, bundle.weights_sha256, tuple(refs))
        errors = sum(r.model_correct is False for r in refs)
        st.caption(
            f"The model is right on {len(refs) - errors} of these {len(refs)} cases and wrong on "
            f"{errors} (its reference label among the labels it calls positive)."
        )
        share = st.slider(
            "Share of model errors to pick", 0.0, 1.0, errors / len(refs) if refs else 0.0, 0.05,
            help="A trust study must show the model being wrong too: does trust separate its "
            "right decisions from its wrong ones?",
        )  # fmt: skip
        picked = largest_pick(refs, share)
        by_id = {r.case_id: r for r in refs}
        with st.form("create"):
            name = st.text_input("Study name", value="Trust in explanations")
            chosen = st.multiselect(
                "Cases",
                list(by_id),
                default=[r.case_id for r in picked],
                format_func=lambda case_id: (
                    f"{case_id} ("
                    + {True: "model right", False: "model wrong", None: "?"}[
                        by_id[case_id].model_correct
                    ]
                    + ")"
                ),
            )
            practice_count = st.number_input(
                "Practice cases",
                min_value=0,
                max_value=service.MAX_PRACTICE_CASES,
                value=0,
                step=1,
                help="Familiarisation: cases every rater sees first, from the candidates not in "
                "the study; marked as practice and left out of the analysis",
            )
            methods = st.multiselect(
                "Methods",
                [*METHODS, *evaluated_variants()],
                default=["gradcam", "lime", "lrp"],
                help="Variants with settings (another CAM layer, another LRP composite) are "
                "offered once the batch evaluation holds them (`evaluate --param ...`)",
            )
            blinded = st.toggle("Blinded (methods shown as A, B, C…; no metrics)", value=True)
            first_read = st.toggle(
                "First read without explanations",
                value=False,
                help="Raters say whether they agree with the model before the panels are shown, "
                "and again with them: the analysis reports how often explanations changed it",
            )
            crossover = st.toggle(
                "Crossover with washout",
                value=False,
                help="Each rater reads every case twice, in two sessions: with the explanations "
                "in one and without in the other (half the cases each way); the second session "
                "opens after the washout; the analysis pairs the two reads",
            )
            washout = st.number_input("Washout (days)", 0, service.MAX_WASHOUT_DAYS, 14, step=1)
            staged = st.toggle(
                "Staged reveal",
                value=False,
                help="Each case in three stages (Rainey et al.): the image alone (the rater's "
                "own reading and confidence), then the model's label (agree? confidence), then "
                "the explanations; the analysis follows the decision through the stages",
            )
            shams = st.multiselect(
                "Sham panels for",
                list(METHODS),
                help="Blinded studies: for each method chosen, one more panel showing its map of "
                "another class, among the real ones; raters are never told; the analysis "
                "compares trust in real and sham panels",
            )
            localise = st.toggle(
                "Readers mark where the finding is",
                value=False,
                help="Each rater drags a box (or several) on the image; the marks are scored "
                "against the reference annotation and each panel's region, and exported as a "
                "manifest (reader_marks.csv) to serve as truth in `evaluate`",
            )
            explain = st.radio(
                "The panels explain",
                service.EXPLAIN_CHOICES,
                format_func=lambda choice: {
                    "prediction": "the model's prediction (what a clinician sees in practice)",
                    "reference": "the case's reference label",
                }[choice],
                horizontal=True,
            )
            seed = st.number_input("Seed", min_value=0, value=0, step=1)
            instructions = st.text_area(
                "Instructions for raters",
                value="Rate how much you trust each explanation, whether it marks the right "
                "region, and how useful it would be (1 = not at all, 5 = fully).",
            )
            if st.form_submit_button("Create"):
                unused = [r for r in refs if r.case_id not in chosen]  # practice cases
                try:
                    code = service.create_study(
                        db,
                        token,
                        name,
                        [by_id[c] for c in chosen],
                        methods,
                        blinded,
                        int(seed),
                        instructions,
                        first_read=first_read,
                        explain=explain,
                        practice=unused[: int(practice_count)],
                        localise=localise,
                        shams=[m for m in shams if m in methods],
                        staged=staged,
                        washout_days=int(washout) if crossover else None,
                    )
                except service.StudyError as exc:
                    st.error(plain(str(exc)))
                else:
                    st.success(f"Study created. Raters join with the code {code}.")


def chosen_study(db) -> dict:
    """The study the admin picked, with its invitation link; the page stops without one."""
    studies = list(db["studies"].rows_where(order_by="id desc"))
    if not studies:
        st.info("No study yet.")
        st.stop()
    labels = [f"{s['name']} ({s['code']}, {s['mode']})" for s in studies]
    study = studies[labels.index(st.selectbox("Study", labels))]
    link = service.invite_link(public_url() or server_url(), study["code"])
    st.write(
        "Invite raters: send them this link (the code is filled in), from the address they "
        "reach this server at (`$CXRXAI_PUBLIC_URL` sets it, e.g. the HTTPS address of a "
        "reverse proxy; README, Running a study):"
    )
    st.code(link, language=None)
    ready, total = study_preparation(db, study, require_bundle())
    if study.get("prepare") and ready < total:
        st.info(
            f"Preparing the explanations: {ready} of {total} maps ready (computed in the "
            "background; raters can start once all are ready). Reload to update."
        )
        st.progress(ready / max(total, 1), text=f"{ready} of {total} maps ready")
    elif study.get("prepare"):
        st.caption(f"All {total} maps are ready: raters never wait for one.")
    return study


def progress(db, study: dict) -> None:
    st.subheader("Progress")
    st.dataframe(service.progress(db, study["id"], real_names=True), hide_index=True)


def findings_section(db, study: dict) -> None:
    """The ratings per method and class, the score's box plot, and every finding."""
    rows = analysis.ratings(db, study["id"])
    if not rows:
        st.info("No ratings yet.")
        st.stop()
    (per_method, per_class), found = study_findings(db, study, rows)
    st.subheader(per_method.title)
    st.dataframe(per_method.table, hide_index=True)
    score = st.selectbox("Score", service.SCORES)
    st.plotly_chart(
        px.box(rows, x="method", y=score, color="target", points="all", range_y=[0.5, 5.5]),
        width="stretch",
    )
    st.subheader(per_class.title)
    st.dataframe(per_class.table, hide_index=True)
    show_findings(found)


def exports(db, study: dict) -> None:
    real_names = st.toggle("Export real names instead of pseudonyms", value=False)
    export_rows = analysis.ratings(db, study["id"], real_names)
    st.download_button(
        "Ratings (CSV)", csv_text(export_rows, analysis.EXPORT_COLUMNS), "ratings.csv", "text/csv"
    )
    st.download_button(
        "iMRMC input file", imrmc_text(export_rows, study["name"]), IMRMC_FILE, "text/plain"
    )
    st.download_button(
        "Ratings (JSON)",
        analysis.json_text(export_rows),
        "ratings.json",
        "application/json",
    )


def main() -> None:
    through_the_router()
    st.title("Study administration")
    db = study_db()
    session = st.session_state.setdefault("session_id", secrets.token_hex(8))
    if not service.admin_password_set(db):
        first_start(db, session)  # stops the page
    token = admin_token(db, session)
    create_form(db, token)
    study = chosen_study(db)
    progress(db, study)
    findings_section(db, study)  # stops the page while there is no rating
    exports(db, study)


main()
