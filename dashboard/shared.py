"""What several pages share, created once per process (the model) or per input (images, maps,
probabilities); the study database per browser session.

Only glue lives here: every computation is a ``cxrxai`` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from cxrxai.background import start_job
from cxrxai.cases import Case
from cxrxai.checkpoint import load_checkpoint
from cxrxai.demo import demo_cases
from cxrxai.environment import (
    DEMO_CHECKPOINT,
    background_maps,
    cache_dir,
    checkpoint_from_env,
    data_root,
    study_path,
)
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.address import ReviewAddress, from_query
from cxrxai.explain import Heatmap, get_explainer
from cxrxai.explain.cache import HeatmapCache, image_hash
from cxrxai.explain.params import check_params, parse_variant
from cxrxai.imageio import XRayImage, read_image
from cxrxai.render import plain
from cxrxai.runner import ModelBundle
from cxrxai.study.prepare import map_count


def checkpoint_path() -> str:
    """This session's choice (Model page), else $CXRXAI_CHECKPOINT, else the demo."""
    chosen = st.session_state.get("checkpoint_path")
    return chosen or checkpoint_from_env() or str(DEMO_CHECKPOINT)


@st.cache_resource(show_spinner="Loading the model…")
def get_bundle(path: str) -> ModelBundle:
    return load_checkpoint(path)


@st.cache_resource(show_spinner="Listing the demo cases…")
def get_demo_cases(root: str) -> list[Case]:
    return demo_cases(data_root(root))


@st.cache_data(show_spinner=False, max_entries=64)
def get_image(path: str, window: tuple[float, float] | None = None) -> XRayImage:
    return read_image(path, window=window)


def server_url() -> str:
    """The address this browser reached the server at (scheme, host and port), else this
    machine at the server's configured port."""
    url = st.context.url or ""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('/', 1)[0]}"
    return f"http://localhost:{st.get_option('server.port')}"


def require_bundle() -> ModelBundle:
    """The configured model, or a clear message on the page and a stop."""
    try:
        return get_bundle(checkpoint_path())
    except CxrxaiError as exc:
        st.error(plain(f"The model could not be loaded. {exc}"))
        st.stop()
        raise  # st.stop() raises; this line only satisfies type checkers


def explain_cached(
    bundle: ModelBundle,
    pixels,
    method: str,
    target: int,
    params: Mapping[str, Any] | None = None,
    pixels_sha: str | None = None,
) -> Heatmap:
    """One method's map with its settings: from memory after the first run of a page, else
    through the disk cache (instant when the case was seen before), else computed.
    ``pixels_sha``: the image's hash when the page has it (otherwise a full radiograph is
    hashed once per panel on every widget change)."""
    return _explain_in_memory(
        bundle,
        pixels,
        str(cache_dir()),
        bundle.weights_sha256,
        pixels_sha or image_hash(pixels),
        method,
        target,
        tuple(sorted((params or {}).items())),
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def _explain_in_memory(
    _bundle: ModelBundle,
    _pixels,
    cache_dir: str,
    weights_sha256: str,
    image_sha: str,
    method: str,
    target: int,
    params: tuple[tuple[str, Any], ...],
) -> Heatmap:
    """Keyed by hashes, so a widget change does not reload maps from disk (Heatmaps are
    never modified by the pages, so one object can serve every session)."""
    cache = HeatmapCache(cache_dir)
    explainer = get_explainer(method, **dict(params))
    (heatmap,) = cache.explain(explainer, _bundle, _pixels, target=target)
    return heatmap


@st.cache_data(show_spinner=False, max_entries=64)
def get_probabilities(_bundle: ModelBundle, weights_sha256: str, pixels) -> list[float]:
    """The model's probabilities for an image, computed once per (model, image) rather than
    on every widget change."""
    return _bundle.predict_proba(pixels)[0].tolist()


def file_versions(path) -> tuple[int, ...]:
    """Modification times of a database and its WAL: part of a cache key, so a cached
    answer is recomputed once the database changes."""
    return tuple(
        p.stat().st_mtime_ns for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def study_db():  # -> sqlite_utils.Database, one connection per browser session
    """The study database (``$CXRXAI_STUDY_DB``), connected once per session; a clear
    message on the page and a stop when it cannot be opened."""
    from cxrxai.study.db import connect

    path = str(study_path())
    if st.session_state.get("study_db_path") != path:
        try:
            st.session_state["study_db"] = connect(path)
        except CxrxaiError as exc:
            st.error(plain(str(exc)))
            st.stop()
        st.session_state["study_db_path"] = path
    return st.session_state["study_db"]


@st.cache_resource(show_spinner=False)
def start_study_preparation(code: str, checkpoint: str, database: str):  # -> Popen | None
    """Once per server and study: the worker that computes every map of the study
    (``study prepare``), low priority, ending with the server. A server restarted while
    maps were missing starts it again on the next study page, and it resumes."""
    if not background_maps():
        return None
    arguments = ["study", "prepare", "--code", code, "--checkpoint", checkpoint]
    arguments += ["--db", database, "--data-root", str(data_root())]
    return start_job(arguments, cache_dir().parent / "study-preparation.log")


def study_preparation(db, study: dict, bundle: ModelBundle) -> tuple[int, int]:
    """(maps ready, maps in all) of a study, its worker started when maps are missing; a
    worker that failed (a variant this model cannot take, a case not on this machine) is
    reported on the page with the end of its log."""
    ready, total = map_count(db, study["id"])
    if study.get("prepare") and ready < total:
        worker = start_study_preparation(study["code"], str(bundle.path), str(study_path()))
        if worker is not None and worker.poll() not in (None, 0):
            log = cache_dir().parent / "study-preparation.log"
            tail = log.read_text(errors="replace")[-600:] if log.is_file() else ""
            st.error(
                "Preparing this study's explanations failed, so raters cannot start: "
                f"{plain(tail.strip().splitlines()[-1] if tail.strip() else 'see the log')}"
                f" (log: {plain(str(log))}). Fix it and restart the dashboard, or create the "
                "study again with methods this model can take."
            )
    return ready, total


ADDRESS_KEYS = ("case", "label", "method")


def _address_now() -> dict[str, list[str]]:
    return {key: list(st.query_params.get_all(key)) for key in ADDRESS_KEYS}


def apply_address(cases: list[Case], labels: list[str]) -> list[str]:
    """Open what the address bar names (a bookmark, a shared link, a reload) when it is not
    the address this page wrote itself; returns what was left out, for the page to say."""
    now = _address_now()
    if not any(now.values()) or now == st.session_state.get("address_written"):
        return []
    address = from_query(st.query_params.get_all, check_params)
    problems = list(address.problems)
    if address.case_id is not None:
        if any(c.case_id == address.case_id for c in cases):
            st.session_state["case_id"] = address.case_id
            st.session_state["class_filter"] = "all"
            if address.label in labels:
                st.session_state["review_request"] = {
                    "case_id": address.case_id,
                    "target": address.label,
                }
            elif address.label is not None:
                problems.append(
                    f"label '{address.label[:80]}' from the address is not one of this "
                    f"model's ({', '.join(labels[:6])})"
                )
        else:
            problems.append(
                f"case '{address.case_id[:120]}' from the address is not among the cases "
                "here (another data folder or model?)"
            )
    if address.methods:
        st.session_state["methods"] = address.methods
        for method, params in address.params.items():
            for name, value in params.items():
                st.session_state[f"param-{method}-{name}"] = value
    st.session_state["address_written"] = now
    return problems


def write_address(
    case_id: str | None, label: str, methods: list[str], settings: Mapping[str, Mapping[str, Any]]
) -> None:
    """Put what the page shows into the address bar (only when it changed)."""
    address = ReviewAddress(
        case_id, label, list(methods), {m: dict(settings.get(m, {})) for m in methods}
    )
    query = address.query()
    written = {
        key: [query[key]] if isinstance(query.get(key), str) else list(query.get(key, []))
        for key in ADDRESS_KEYS
    }
    if written != st.session_state.get("address_written"):
        for key in ADDRESS_KEYS:  # only the page's own keys: others (a study code) stay
            if key in query:
                st.query_params[key] = query[key]
            elif key in st.query_params:
                del st.query_params[key]
        st.session_state["address_written"] = written


def open_in_review(
    case: Case,
    target: str | None = None,
    method: str | None = None,
    beside: list[Case] | None = None,
) -> None:
    """Switch to the Review page on ``case``, explaining ``target`` with ``method`` (a
    results row's name: a variant such as ``gradcam(layer=blocks.6)`` opens with its
    settings); ``beside``: more cases offered with it (a PACS study's other images)."""
    st.session_state["extra_cases"] = [case, *(c for c in beside or [] if c is not case)]
    st.session_state["class_filter"] = "all"
    st.session_state["case_id"] = case.case_id
    if target is not None:
        st.session_state["review_request"] = {"case_id": case.case_id, "target": target}
    if method is not None:
        name, params = parse_variant(method)
        st.session_state["methods"] = [name]
        for param, value in params.items():
            if value is not None:
                st.session_state[f"param-{name}-{param}"] = value
    st.switch_page("pages/review.py")
