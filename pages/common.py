"""Resources shared by the pages, created once per process (model) or per input (images).

Only glue lives here: every computation is a ``cxrxai`` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from cxrxai.background import start_job
from cxrxai.cases import Annotation, Case
from cxrxai.checkpoint import load_checkpoint
from cxrxai.demo import demo_cases
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.address import ReviewAddress, from_query
from cxrxai.explain import Heatmap, get_explainer
from cxrxai.explain.cache import HeatmapCache, image_hash
from cxrxai.explain.cam import candidate_layers
from cxrxai.explain.params import changed, check_params, parameters, parse_variant
from cxrxai.imageio import XRayImage, read_image
from cxrxai.lungs import LungSegmenter, lung_annotation, predicted_lungs
from cxrxai.ood import OodStats, judge, lung_shape
from cxrxai.render import plain
from cxrxai.runner import ModelBundle
from cxrxai.settings import (
    DEMO_CHECKPOINT,
    background_maps,
    cache_dir,
    checkpoint_from_env,
    data_root,
    results_path,
    study_path,
)
from cxrxai.study.prepare import map_count
from pages.streamlit_router import through_the_router  # noqa: F401 (every page calls it)


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


@st.cache_data(show_spinner=False, max_entries=16)
def get_uploaded_image(data: bytes, name: str, window: tuple[float, float] | None) -> XRayImage:
    return read_image(data, name=name, window=window)


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
    ``pixels_sha``: the image's hash when the page has it (hashing a full radiograph costs
    12 ms, once per panel on every widget change otherwise)."""
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


@st.cache_resource(show_spinner=False, max_entries=8)
def cam_layers(_bundle: ModelBundle, weights_sha256: str) -> list[tuple[str, int, int, int]]:
    """(name, channels, height, width) of the layers a CAM method can use, once per
    checkpoint rather than a forward pass on every widget change."""
    return candidate_layers(_bundle)


def method_settings(bundle: ModelBundle, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Widgets for the chosen methods' settings (those that change the map), described by
    :mod:`cxrxai.explain.params`; returns only the settings changed from the defaults, so
    maps computed with defaults (precomputed, cached) are found again.

    Each widget's value lives in the session under ``param-METHOD-NAME`` (set there first,
    never passed as a default too), so another page can open a case with settings
    (:func:`open_in_review`)."""
    settings: dict[str, dict[str, Any]] = {}
    for method in methods:
        shown = [p for p in parameters(method) if p.ui]
        if not shown:
            continue
        st.markdown(f"**{plain(method)}**")
        chosen = {}
        for param in shown:
            key, label = f"param-{method}-{param.name}", param.name.replace("_", " ")
            rule = param
            if param.name == "layer" or rule.choices or rule.suggestions:
                if param.name == "layer":  # None means the card's layer: offer it by name
                    default = bundle.card.target_layer
                    names = [name for name, *_ in cam_layers(bundle, bundle.weights_sha256)]
                    options = names if default in names else [default, *names]
                else:
                    default, options = param.default, list(rule.choices or rule.suggestions or ())
                    current = st.session_state.get(key)  # e.g. a variant opened from Cases
                    if rule.suggestions and current not in options:
                        try:
                            options.append(param.check(method, current))
                        except CxrxaiError:
                            pass  # not a value of this setting: the default below
                if st.session_state.get(key) not in options:  # new, or another model's layer
                    st.session_state[key] = default
                value = st.selectbox(label, options, key=key, help=rule.help)
                chosen[param.name] = None if param.name == "layer" and value == default else value
            elif param.kind is int:
                st.session_state.setdefault(key, int(param.default))
                chosen[param.name] = int(
                    st.number_input(
                        label, min_value=int(rule.minimum or 1), step=1, key=key, help=rule.help
                    )
                )
            else:
                st.session_state.setdefault(key, float(param.default))
                chosen[param.name] = float(
                    st.number_input(
                        label,
                        min_value=rule.minimum,
                        max_value=rule.maximum,
                        step=0.01,
                        key=key,
                        help=rule.help,
                    )
                )
        settings[method] = changed(method, chosen)
    return settings


BACKGROUND_METHODS = ("lime", "shap")  # slow on a CPU: computed after the server starts


@st.cache_resource(show_spinner=False)
def start_background_maps(checkpoint: str, root: str):  # -> subprocess.Popen | None
    """Once per server: the demo cases' LIME and SHAP maps computed into the heatmap cache
    by a separate, low-priority process (``precompute-demo --maps-only``), so the first
    visitor waits for none of them. Only for the demo checkpoint; off with
    $CXRXAI_BACKGROUND_MAPS=0."""
    if not background_maps() or Path(checkpoint).resolve() != DEMO_CHECKPOINT.resolve():
        return None
    arguments = ["precompute-demo", "--maps-only", "--methods", ",".join(BACKGROUND_METHODS)]
    return start_job([*arguments, "--data-root", root], cache_dir().parent / "background-maps.log")


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


def background_status(bundle: ModelBundle, cases: list[Case]) -> str:
    """Which demo cases have their LIME and SHAP maps ready ('' when not running)."""
    process = start_background_maps(str(bundle.path), str(data_root()))
    if process is None:
        return ""
    cache = HeatmapCache()
    ready = 0
    for case in cases:
        pixels = get_image(str(case.image_path)).pixels
        probabilities = get_probabilities(bundle, bundle.weights_sha256, pixels)
        target = bundle.card.explained_by_default(probabilities)
        sha = image_hash(pixels)
        if all(cache.has(get_explainer(m), bundle, sha, target) for m in BACKGROUND_METHODS):
            ready += 1
    state = "done" if process.poll() is not None else "computing in the background"
    return f"LIME and SHAP maps ready for {ready} of {len(cases)} demo cases ({state})."


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


def open_in_review(case: Case, target: str | None = None, method: str | None = None) -> None:
    """Switch to the Review page on ``case``, explaining ``target`` with ``method`` (a
    results row's name: a variant such as ``gradcam(layer=blocks.6)`` opens with its
    settings)."""
    st.session_state["extra_cases"] = [case]
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


@st.cache_resource(show_spinner="Loading the lung-field model…")
def get_lung_model() -> LungSegmenter:
    return LungSegmenter.load()


@st.cache_resource(show_spinner=False)
def get_ood_stats(folder: str) -> OodStats:
    return OodStats.load(Path(folder))


@st.cache_data(show_spinner=False, max_entries=64)
def _lung_analysis(_segmenter: LungSegmenter, weights_sha256: str, pixels_sha: str, _pixels):
    """The predicted lung mask and the pooled features of an image: one pass, once."""
    probabilities, features = _segmenter.analyse([_pixels])
    return probabilities[0] >= _segmenter.threshold, features


def lung_fields(case: Case | None, pixels, pixels_sha: str) -> Annotation | None:
    """The case's lung mask, else the lung-field model's prediction (marked predicted),
    computed once per image; None, with a warning on the page, when the model cannot load."""
    if case is not None and case.anatomy("lungs") is not None:
        return lung_annotation(case, pixels, None)
    try:
        segmenter = get_lung_model()
    except CxrxaiError as exc:
        st.warning(f"No predicted lung fields: {plain(str(exc))}")
        return None
    mask, _ = _lung_analysis(segmenter, segmenter.weights_sha256, pixels_sha, pixels)
    return predicted_lungs(mask, segmenter.name)


def ood_warning(pixels, pixels_sha: str) -> str:
    """The out-of-distribution warning for an image ('' when it looks like a chest
    radiograph, or when the check cannot run: said once as a caption)."""
    try:
        segmenter = get_lung_model()
        stats = get_ood_stats(str(segmenter.folder))
    except CxrxaiError as exc:
        st.caption(f"Out-of-distribution check unavailable: {plain(str(exc))}")
        return ""
    mask, features = _lung_analysis(segmenter, segmenter.weights_sha256, pixels_sha, pixels)
    distance = float(stats.distances(features)[0])
    return judge(stats, distance, lung_shape(mask)).message()


@st.cache_data(show_spinner=False, max_entries=64)
def get_probabilities(_bundle: ModelBundle, weights_sha256: str, pixels) -> list[float]:
    """The model's probabilities for an image, computed once per (model, image) rather than
    on every widget change."""
    return _bundle.predict_proba(pixels)[0].tolist()


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


@st.cache_data(show_spinner=False, max_entries=16)
def study_mrmc(study_id: int, last_rating_id: int, _rows: list) -> dict:
    """The reader study's MRMC analysis (iMRMC's U-statistics), once per study and set of
    ratings, not on every widget change of Study admin."""
    from cxrxai.study.mrmc import reader_study

    return reader_study(_rows)


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


def _versions(path) -> tuple[int, ...]:
    """Modification times of a database and its WAL: part of a cache key, so a cached
    answer is recomputed once the database changes."""
    return tuple(
        p.stat().st_mtime_ns for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


def compared_methods(path, filters, metric: str) -> list[dict]:
    """The Cases page's paired comparison of methods, recomputed only when the results
    database or the choice changes, not on every widget change elsewhere on the page:
    SciPy's Wilcoxon is an exact permutation test for small samples with ties (2.4 s for
    the 80 pairs of the NIH results on 2 cores)."""
    return _compared_methods(str(path), _versions(path), filters, metric)


def filtered_rows(path, filters) -> list[dict]:
    """The Cases page's rows, read again only when the database or the filters change (a
    whole split at one setting: 400,000 rows take 3 s). Shared, not copied: read-only."""
    return _filtered_rows(str(path), _versions(path), filters)


def results_overview(path) -> tuple[int, list, list[str], list[str]]:
    """What the Cases page's sidebar lists - rows of an older metrics definition, region
    settings, classes, methods - from the database's summaries (four full scans, 3 s on
    3.6 million rows, once per state of the rows)."""
    return _results_overview(str(path), _versions(path))


@st.cache_data(max_entries=8)
def _results_overview(path: str, versions: tuple[int, ...]) -> tuple[int, list, list, list]:
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.store import open_results

    return summaries.overview(open_results(path))


def iou_curves(path) -> dict:
    """IoU versus p with bootstrap CIs, read from the database's summaries (computed there
    once per state of the rows: 16 s for a 200,000-case x 2-method evaluation)."""
    return _iou_curves(str(path), _versions(path))


@st.cache_data(show_spinner="Bootstrapping IoU versus p…", max_entries=8)
def _iou_curves(path: str, versions: tuple[int, ...]) -> dict:
    from cxrxai.evaluation import summaries
    from cxrxai.evaluation.store import open_results

    return summaries.iou_curves(open_results(path))


@st.cache_resource(show_spinner="Reading the results…", max_entries=4)
def _filtered_rows(path: str, versions: tuple[int, ...], filters) -> list[dict]:
    from cxrxai.evaluation import browse
    from cxrxai.evaluation.store import open_results

    return browse.filtered_rows(open_results(path), filters)


@st.cache_data(show_spinner="Comparing the methods…", max_entries=32)
def _compared_methods(path: str, versions: tuple[int, ...], filters, metric: str) -> list[dict]:
    # ``versions`` (file modification times) is only part of the cache key
    from cxrxai.evaluation import browse, summaries
    from cxrxai.evaluation.store import open_results

    # the rows through the rows' cache: with the IoU range left open (the first view),
    # they are the rows the page read already (3 s for a whole split), not read again
    rows = _filtered_rows(path, versions, browse.comparison_filters(filters))
    db = open_results(path)
    if summaries.is_unfiltered(filters):  # kept in the database once computed
        return summaries.comparison(db, filters.mode, filters.value, metric, rows)
    return browse.compared_methods(db, filters, metric, rows)
