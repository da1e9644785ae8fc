"""Review one case: the X-ray with its annotations and the model's probabilities."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cxrxai.errors import CxrxaiError
from cxrxai.render import author_colours, draw_annotations, overlay
from cxrxai.settings import DATA_ENV_VAR, data_root
from pages.common import (
    explain_cached,
    get_demo_cases,
    get_image,
    get_probabilities,
    get_uploaded_image,
    require_bundle,
)

st.title("Case review")

bundle = require_bundle()

root = data_root()
cases = get_demo_cases(str(root))
if not root.exists():
    st.info(
        f"No dataset found at `{root}`: showing the sample chest DICOM from pydicom-data. "
        f"Set `{DATA_ENV_VAR}` to a folder holding covid-qu-ex/ or nih-bbox/ to review "
        "real cases."
    )

with st.sidebar:
    upload = st.file_uploader("Open an X-ray (PNG, JPEG or DICOM)", type=None)
    ids = [case.case_id for case in cases]
    case_id = st.selectbox("Case", ids, disabled=upload is not None)
    show_truth = st.toggle("Show ground truth", value=True)
    methods = st.multiselect(
        "Explanations",
        ["gradcam", "gradcam++", "lrp", "smoothgrad-cam", "lime", "shap"],
        default=["gradcam"],
        help="LIME and SHAP take tens of seconds on a CPU when not cached",
    )
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)
    window: tuple[float, float] | None = None
    if st.toggle("Manual DICOM window", value=False):
        center = st.number_input("Window center", value=15000.0, step=100.0)
        width = st.number_input("Window width", min_value=1.0, value=30000.0, step=100.0)
        window = (center, width)

case = next(c for c in cases if c.case_id == case_id)
try:
    if upload is not None:
        image = get_uploaded_image(upload.getvalue(), upload.name, window)
        annotations, title = [], upload.name
    else:
        image = get_image(str(case.image_path), window)
        annotations, title = case.annotations, case.case_id
    picture = draw_annotations(image.pixels, annotations if show_truth else [])
except CxrxaiError as exc:
    st.error(str(exc))
    st.stop()

probabilities = np.array(get_probabilities(bundle, bundle.weights_sha256, image.pixels))
left, right = st.columns([3, 2])
with left:
    st.image(picture, caption=title, width="stretch")
    if show_truth and annotations:
        legend = ", ".join(f"{author}" for author in author_colours(annotations))
        st.caption(f"Annotations by: {legend}. Masks as outlines, boxes per radiologist.")
with right:
    order = probabilities.argsort()
    figure = go.Figure(
        go.Bar(
            x=probabilities[order],
            y=[bundle.labels[i] for i in order],
            orientation="h",
            text=[f"{p:.3f}" for p in probabilities[order]],
            textposition="auto",
        )
    )
    figure.update_layout(
        xaxis={"range": [0, 1], "title": "probability"},
        height=260,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title=f"{bundle.card.name or 'model'} ({bundle.card.task})",
    )
    st.plotly_chart(figure, width="stretch")
    predicted = bundle.labels[int(probabilities.argmax())]
    st.metric("Predicted", predicted, help="argmax of the softmax (multi-class model)")
    if upload is None and case.labels:
        st.write(f"**Reference label(s):** {', '.join(case.labels)}")
    meta = image.meta
    st.write(
        f"**Image:** {meta.file_format}, {meta.shape[1]}×{meta.shape[0]} px, "
        f"{meta.bits_stored} bits"
        + (f", {meta.photometric_interpretation}" if meta.photometric_interpretation else "")
        + (f", view {meta.view_position}" if meta.view_position else "")
        + (f", window {meta.window[0]:g}/{meta.window[1]:g}" if meta.window else "")
    )

if methods:
    panels = st.columns(len(methods))
    target = int(probabilities.argmax())
    for panel, method in zip(panels, methods, strict=True):
        with panel, st.spinner(f"Computing {method}…"):
            try:
                heatmap = explain_cached(bundle, image.pixels, method, target)
            except CxrxaiError as exc:
                st.error(str(exc))
                continue
            st.image(
                overlay(image.pixels, heatmap.numpy(), opacity),
                width="stretch",
                caption=f"{method} for {heatmap.target_label} ({heatmap.seconds:.2f} s)",
            )
