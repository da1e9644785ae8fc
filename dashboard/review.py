"""The Review page's own resources: uploads, method settings, the background LIME/SHAP maps of
the demo, the lung fields and the out-of-distribution warning; the Model page's CAM layers.

Only glue lives here: every computation is a ``cxrxai`` call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from cxrxai.background import start_job
from cxrxai.cases import Annotation, Case
from cxrxai.environment import (
    DEMO_CHECKPOINT,
    background_maps,
    cache_dir,
    data_root,
)
from cxrxai.errors import CxrxaiError
from cxrxai.explain import get_explainer
from cxrxai.explain.cache import HeatmapCache, image_hash
from cxrxai.explain.cam import candidate_layers
from cxrxai.explain.params import changed, parameters
from cxrxai.explain.registry import METHODS
from cxrxai.imageio import XRayImage, read_image
from cxrxai.lungs import LungSegmenter, lung_annotation, predicted_lungs
from cxrxai.ood import OodStats, judge, lung_shape
from cxrxai.render import plain
from cxrxai.runner import ModelBundle
from dashboard.shared import get_image, get_probabilities


@st.cache_data(show_spinner=False, max_entries=16)
def get_uploaded_image(data: bytes, name: str, window: tuple[float, float] | None) -> XRayImage:
    return read_image(data, name=name, window=window)


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


# computed for the demo cases after the server starts (Explainer.slow_on_cpu)
BACKGROUND_METHODS = tuple(name for name, cls in METHODS.items() if cls.slow_on_cpu)


def slow_methods() -> str:
    """The background methods as a reader names them ('LIME and SHAP')."""
    return " and ".join(name.upper() for name in BACKGROUND_METHODS)


@st.cache_resource(show_spinner=False)
def start_background_maps(checkpoint: str, root: str):  # -> subprocess.Popen | None
    """Once per server: the demo cases' slow maps (LIME, SHAP) computed into the heatmap cache
    by a separate, low-priority process (``precompute-demo --maps-only``), so the first
    visitor waits for none of them. Only for the demo checkpoint; off with
    $CXRXAI_BACKGROUND_MAPS=0."""
    if not background_maps() or Path(checkpoint).resolve() != DEMO_CHECKPOINT.resolve():
        return None
    arguments = ["precompute-demo", "--maps-only", "--methods", ",".join(BACKGROUND_METHODS)]
    return start_job([*arguments, "--data-root", root], cache_dir().parent / "background-maps.log")


def background_status(bundle: ModelBundle, cases: list[Case]) -> str:
    """Which demo cases have their slow methods' maps ready ('' when not running)."""
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
    return f"{slow_methods()} maps ready for {ready} of {len(cases)} demo cases ({state})."


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
