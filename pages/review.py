"""Review one case: the X-ray with its annotations, explanation panels side by side, live
localisation metrics, a radiologist's own box, and the deletion curve on demand."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cxrxai.cases import findings_of
from cxrxai.csvout import csv_text
from cxrxai.demo import scorable
from cxrxai.environment import DATA_ENV_VAR, data_root
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.drawing import boxes_from_selection, drawing_figure
from cxrxai.evaluation.evaluate import region_setting_metrics
from cxrxai.evaluation.figures import deletion_insertion_chart, probability_chart, sanity_chart
from cxrxai.evaluation.sanity import FAIL_SPEARMAN, cascading_randomisation, deepest, verdicts
from cxrxai.explain.cache import image_hash
from cxrxai.explain.params import describe as describe_params
from cxrxai.explain.params import variant
from cxrxai.explain.registry import METHODS
from cxrxai.metrics.agreement import map_agreement
from cxrxai.metrics.faithfulness import deletion_insertion
from cxrxai.metrics.regions import REGION_MODES
from cxrxai.metrics.registry import describe, shortcut, shortcut_caption
from cxrxai.render import (
    COLORMAPS,
    author_colours,
    colour_legend,
    display_pixels,
    draw_annotations,
    draw_region,
    for_screen,
    overlay,
    plain,
    png_bytes,
)
from dashboard.pacs import send_to_pacs
from dashboard.review import (
    background_status,
    get_uploaded_image,
    lung_fields,
    method_settings,
    ood_warning,
)
from dashboard.router import through_the_router
from dashboard.shared import (
    apply_address,
    explain_cached,
    get_demo_cases,
    get_image,
    get_probabilities,
    require_bundle,
    write_address,
)

through_the_router()

st.title("Case review")
intro, *starts = st.columns([4, 1, 1, 1])
intro.markdown(
    "**cxrxai** shows where a chest X-ray classifier's explanations look, next to the "
    "radiologists' marks, and measures how well they agree."
)
starts[0].page_link("pages/review.py", label="Review a demo case", icon=":material/radiology:")
starts[1].page_link("pages/cases.py", label="Browse the evaluation", icon=":material/table_view:")
starts[2].page_link("pages/study_admin.py", label="Run a study", icon=":material/how_to_vote:")
bundle = require_bundle()
root = data_root()
# Demo cases the loaded model can score (a label among its outputs), or unlabelled ones.
all_cases = scorable(
    get_demo_cases(str(root)) + st.session_state.get("extra_cases", []), bundle.labels
) or get_demo_cases(str(root))
address_problems = apply_address(all_cases, bundle.labels)
extra = st.session_state.get("extra_cases", [])
if status := background_status(bundle, [c for c in all_cases if c not in extra]):
    st.caption(status)
if not root.exists():
    st.info(
        f"No dataset found at `{root}`: showing the sample chest DICOM from pydicom-data. "
        f"Set `{DATA_ENV_VAR}` to a folder holding covid-qu-ex/ or nih-bbox/ to review "
        "real cases."
    )
for problem in address_problems:
    st.warning(plain(problem))

REGION_VALUES = {  # slider (min, max, default, step) per region mode
    "top-percent": (1.0, 50.0, 10.0, 1.0),
    "threshold": (0.05, 0.95, 0.5, 0.05),
    "otsu": None,
    "top-superpixels": (1.0, 20.0, 5.0, 1.0),
}

with st.sidebar:
    upload = st.file_uploader("Open an X-ray (PNG, JPEG or DICOM)", type=None)
    classes = sorted({label for c in all_cases for label in c.labels})
    chosen_class = st.selectbox(
        "Class", ["all", *classes], key="class_filter", disabled=upload is not None
    )
    cases = [c for c in all_cases if chosen_class == "all" or chosen_class in c.labels]
    ids = [c.case_id for c in cases]
    if st.session_state.get("case_id") not in ids:
        st.session_state["case_id"] = ids[0]
    previous, following = st.columns(2)
    position = ids.index(st.session_state["case_id"])
    if previous.button("◀ Previous", width="stretch"):
        st.session_state["case_id"] = ids[(position - 1) % len(ids)]
    if following.button("Next ▶", width="stretch"):
        st.session_state["case_id"] = ids[(position + 1) % len(ids)]
    case_id = st.selectbox("Case", ids, key="case_id", disabled=upload is not None)
    show_truth = st.toggle("Show ground truth", value=True)
    truth_on_panels = st.toggle(
        "Ground truth on the explanation panels",
        value=True,
        disabled=not show_truth,
        help="The findings of the explained label, outlined over each heatmap",
    )
    st.session_state.setdefault("methods", ["gradcam", "lrp"])
    methods = st.multiselect(
        "Explanations",
        list(METHODS),
        key="methods",
        help="LIME and SHAP take tens of seconds on a CPU when not cached",
    )
    with st.expander("Method settings"):
        settings = method_settings(bundle, methods)
    per_row = st.slider(
        "Panels per row", 1, 4, 3, help="fewer per row: larger panels, to look closely"
    )
    opacity = st.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05)
    colormap = st.selectbox("Colormap (non-negative maps)", COLORMAPS)
    st.subheader("Region from the heatmap")
    mode = st.selectbox("Region mode", REGION_MODES)
    limits = REGION_VALUES[mode]
    value = st.slider("Region value", *limits) if limits else 0.0
    show_region = st.toggle("Draw the region and its boxes", value=True)
    within_lungs = st.toggle(
        "Only inside the lungs",
        value=False,
        help="the case's lung mask, else the lung-field model's prediction",
    )
    show_lungs = st.toggle(
        "Show the lung fields",
        value=True,
        help="outlined in blue; dashed where predicted by the lung-field model",
    )
    zero_empty = st.toggle(
        "Count a miss on an empty mask as 0",
        value=False,
        help="Default (off) is CheXlocalize's: IoU is n/a unless both masks are non-empty",
    )

case = next(c for c in cases if c.case_id == case_id)
try:
    if upload is not None:
        base_image = get_uploaded_image(upload.getvalue(), upload.name, None)
        annotations, title = [], upload.name
    else:
        base_image = get_image(str(case.image_path))
        annotations, title = list(case.annotations), case.case_id
except CxrxaiError as exc:
    st.error(plain(str(exc)))
    st.stop()

with st.sidebar:
    presets = list(base_image.meta.window_presets)
    window = None
    if base_image.modality_values is not None:
        st.subheader("Window")
        options = ["file default", *[f"{c:g} / {w:g}" for c, w in presets], "manual"]
        choice = st.selectbox("Window level / width", options)
        if choice == "manual":
            center = st.number_input(
                "Level (center)", value=float(np.median(base_image.modality_values))
            )
            width = st.number_input(
                "Width", min_value=1.0, value=float(np.ptp(base_image.modality_values) or 1.0)
            )
            window = (center, width)
        elif choice != "file default":
            window = presets[options.index(choice) - 1]
    st.subheader("Display")
    brightness = st.slider("Brightness", -0.5, 0.5, 0.0, 0.05)
    contrast = st.slider("Contrast", 0.25, 4.0, 1.0, 0.05)
    st.caption(
        "Window, brightness and contrast change what you see only: the model and the maps "
        "always read the image as its model card prescribes."
    )

# The model, the maps and the metrics read the image as stored (the file's own VOI LUT or
# window for DICOM); the reader's window, brightness and contrast are display only, so
# moving them recomputes nothing (a manual window moved the prediction 0.600 -> 0.553).
image = base_image
shown_window = window or base_image.meta.window
shown_pixels = display_pixels(
    (base_image if window is None else base_image.with_window(*window)).pixels,
    brightness,
    contrast,
)
pixels_sha = image_hash(image.pixels)  # once per run: every panel's cache key and the sanity's
lung_outline = lung_fields(None if upload is not None else case, image.pixels, pixels_sha)
if lung_outline is not None and lung_outline.predicted:
    annotations = [a for a in annotations if not (a.role == "anatomy" and a.label == "lungs")]
    annotations.append(lung_outline)
probabilities = np.array(get_probabilities(bundle, bundle.weights_sha256, image.pixels))
predicted = bundle.card.explained_by_default(probabilities)
request = st.session_state.get("review_request") or {}  # a case opened from the Cases page
requested = request.get("target") if request.get("case_id") == case_id and upload is None else None
target_label = st.sidebar.selectbox(
    "Explain the label",
    bundle.labels,
    index=bundle.labels.index(requested) if requested in bundle.labels else predicted,
    help="default: the predicted label (multi-label: the most probable above its threshold)",
)
target = bundle.labels.index(target_label)
write_address(None if upload is not None else case_id, target_label, methods, settings)

# One row: the case, then the first panels (at 1440 x 900 they show without scrolling);
# the reader's drawing under it; further panels in rows below.
chunks = [methods[i : i + per_row] for i in range(0, len(methods), per_row)] or [[]]
first_row = st.columns(1 + len(chunks[0]), gap="small")
drawing_area = st.container()
panels = first_row[1:] + [
    column for chunk in chunks[1:] for column in st.columns(per_row)[: len(chunk)]
]
with drawing_area, st.expander("Draw your own boxes (drag on the image)"):
    author = st.text_input("Your name", max_chars=60, key="own-author")
    use_own = st.toggle("Score the explanations against my boxes", value=False)
    # one drawing per image: boxes never carry over to the next case
    draw_key = f"draw-{st.session_state.get('draw_round', 0)}-{title}"
    event = st.plotly_chart(
        # the same figure on every rerun (the image as stored, not the display settings):
        # a changed figure would drop the selection
        drawing_figure(draw_annotations(image.pixels, []), image.shape),
        on_select="rerun",
        selection_mode="box",
        key=draw_key,
        config={"displayModeBar": False},
    )
    own_boxes = boxes_from_selection(
        (event or {}).get("selection"), image.shape, target_label, (author or "me").strip()
    )
    if st.button("Clear my boxes", disabled=not own_boxes):
        st.session_state["draw_round"] = st.session_state.get("draw_round", 0) + 1
        st.rerun()
    st.caption(
        f"{len(own_boxes)} box(es) drawn; drag again (Shift: add another) to draw more."
        if own_boxes
        else "Drag a box on the image; hold Shift to add more."
    )
if use_own and own_boxes:
    annotations = [a for a in annotations if a.role != "finding"] + own_boxes

with first_row[0]:
    colours = author_colours(annotations)
    drawn = [
        a
        for a in annotations
        if (show_truth and a.role != "anatomy") or (show_lungs and a.role == "anatomy")
    ]
    picture = draw_annotations(shown_pixels, drawn, colours=colours)
    st.image(for_screen(picture), caption=title, width="stretch")
    readers = sorted({a.author or "unknown" for a in annotations if a.role != "anatomy"})
    if show_truth and readers:
        st.caption(
            f"Annotations by: {plain(', '.join(readers))}. Masks as outlines, boxes per "
            "radiologist; on the panels: the heatmap's region in green, its boxes in yellow."
        )
    if show_lungs and lung_outline is not None:
        st.caption(
            f"Lung fields (blue): {plain(lung_outline.author or 'dataset')}"
            + (
                " — dashed: a model's outline, not a radiologist's"
                if lung_outline.predicted
                else " (the dataset's lung mask)"
            )
        )
    if warning := ood_warning(image.pixels, pixels_sha):
        st.warning(warning, icon="⚠️")
    st.metric(
        "Predicted",
        bundle.card.diagnosis(probabilities),
        help=f"{bundle.card.task} model"
        + (
            ": labels at or above their operating threshold (black ticks)"
            if bundle.card.task == "multilabel"
            else ""
        ),
    )
    if upload is None and case.labels:
        st.write(f"**Reference label(s):** {plain(', '.join(case.labels))}")
    meta = image.meta
    st.write(
        f"**Image:** {meta.file_format}, {meta.shape[1]}×{meta.shape[0]} px, "
        f"{meta.bits_stored} bits"
        + (f", {plain(meta.photometric_interpretation)}" if meta.photometric_interpretation else "")
        + (f", view {plain(meta.view_position)}" if meta.view_position else "")
        + (f", window {shown_window[0]:g}/{shown_window[1]:g}" if shown_window else "")
    )
    with st.expander("Probabilities"):
        st.plotly_chart(probability_chart(bundle.card, probabilities), width="stretch")

lungs = lung_outline.to_mask(image.pixels.shape) if lung_outline is not None else None
spacing = image.meta.pixel_spacing_mm
unit = "mm" if spacing else "px"
has_truth = any(a.role == "finding" and a.label == target_label for a in annotations)
shown_maps: dict[str, np.ndarray] = {}
shown_heatmaps: dict = {}  # method -> Heatmap, for "Send to PACS"
shown_regions: dict[str, np.ndarray] = {}
case_metrics: list[dict] = []  # every panel's metrics, for one CSV
if methods:
    for panel, method in zip(panels, methods, strict=True):
        with panel:
            try:
                with st.spinner(f"Computing {method}…"):
                    heatmap = explain_cached(
                        bundle, image.pixels, method, target, settings.get(method), pixels_sha
                    )
                region, boxes, row = region_setting_metrics(
                    heatmap,
                    annotations,
                    target_label,
                    mode,
                    value,
                    "zero" if zero_empty else "nan",
                    lungs,
                    spacing,
                    within_lungs and lungs is not None,
                )
            except CxrxaiError as exc:
                st.error(plain(str(exc)))
                continue
            values = heatmap.numpy()
            shown_maps[method], shown_regions[method] = values, region
            shown_heatmaps[method] = heatmap
            shown = overlay(shown_pixels, values, opacity, colormap=colormap)
            if show_region:
                shown = draw_region(shown, region, boxes)
            if show_truth and truth_on_panels:
                scored = findings_of(annotations, target_label)
                shown = draw_annotations(shown, scored, colours=colours, halo=True)
            own_settings = describe_params(settings.get(method, {}))
            caption = f"{method} for {heatmap.target_label}"
            st.image(
                for_screen(shown),
                width="stretch",
                caption=f"{caption} ({own_settings})" if own_settings else caption,
            )
            st.download_button(
                "Download this panel (PNG)",
                lambda shown=shown: png_bytes(shown),  # encoded on click, not every rerun
                file_name=f"{title.replace('/', '_')}-{method}-{heatmap.target_label}.png",
                mime="image/png",
                key=f"png-{method}",
            )
            made = (
                f"from the cache (made in {heatmap.seconds:.2f} s)"
                if heatmap.from_cache
                else f"computed in {heatmap.seconds:.2f} s"
            )
            st.caption(
                f"{colour_legend(values, heatmap.target_label, colormap)} · {made} · "
                f"region {int(region.sum())} px"
            )
            st.caption(shortcut_caption(row))
            if shortcut(row.get("lung_relevance")):
                st.warning(
                    f"Most of this map's positive relevance lies outside the lungs "
                    f"({1 - row['lung_relevance']:.0%}): it may point at a shortcut (markers, "
                    "text, devices, the frame) rather than at the chest."
                )
            if has_truth:
                st.table(describe(row, unit))
                case_metrics.append(
                    {
                        "case": title,
                        "method": variant(method, settings.get(method, {})),
                        "target": target_label,
                        "region": mode,
                        "region value": value,
                        "unit": unit,
                    }
                    | row
                )
            else:
                st.caption(
                    f"No annotation of '{plain(target_label)}' on this case: no overlap metrics."
                )
            if st.button("Deletion / insertion curve", key=f"curve-{method}"):
                with st.spinner("Re-predicting perturbed images…"):
                    curves = deletion_insertion(bundle, image.pixels, heatmap.values, target)
                chart = deletion_insertion_chart(curves, target_label)
                st.plotly_chart(chart, width="stretch")
if case_metrics:
    st.download_button(
        "Download this case's metrics (CSV)",
        lambda: csv_text(case_metrics),
        file_name=f"{title.replace('/', '_')}-{target_label}-metrics.csv",
        mime="text/csv",
        key="metrics-csv",
    )
if shown_heatmaps and upload is None and image.meta.file_format == "DICOM":
    with st.expander("Send to PACS"):
        st.caption(
            "Files these maps on the image's study as new series: a TID 1500 SR "
            "(probabilities, each map's shares and metrics at the current region setting, "
            "a ROI per box), a FRACTIONAL SEG of the maps and a GSPS of the boxes "
            "(docs/dicom.md). Credentials come from the server's environment."
        )
        pacs_address = st.text_input(
            "PACS address", value=st.session_state.get("pacs_address", ""), key="send-pacs-url"
        )
        overlays = st.checkbox("Also Secondary Capture overlays (NOT FOR DIAGNOSIS)")
        if st.button("Send to PACS", disabled=not pacs_address, key="send-pacs"):
            try:
                with st.spinner("Writing and sending the DICOM objects…"):
                    count = send_to_pacs(
                        pacs_address,
                        case.image_path,
                        bundle,
                        image,
                        list(shown_heatmaps.values()),
                        annotations,
                        lungs,
                        (mode, value),
                        within_lungs and lungs is not None,
                        "zero" if zero_empty else "nan",
                        overlays,
                    )
            except CxrxaiError as exc:
                st.error(plain(str(exc)))
            else:
                st.session_state["pacs_address"] = pacs_address
                st.success(f"Sent {count} DICOM objects to {plain(pacs_address)}.")
if len(shown_maps) >= 2:
    st.subheader("Agreement between the maps")
    st.dataframe(map_agreement(shown_maps, shown_regions), hide_index=True)
    st.caption(
        "Per pair: Spearman rank correlation of |values| and SSIM of the maps (as the "
        "sanity check compares a map with its randomised self; at most 256 px a side), "
        "and the IoU of the two regions at the current region setting."
    )
if shown_maps:
    with st.expander("Sanity check: do these maps depend on what the model learned?"):
        st.caption(
            "Cascading model-parameter randomisation (Adebayo et al. 2018, named in the "
            "VinDr study): the model's layer groups are re-initialised from the classifier "
            "down, on a copy, and each method's map is recomputed and compared with the "
            f"trained model's. A method fails when its map still correlates (Spearman ≥ "
            f"{FAIL_SPEARMAN}) with every group randomised: it does not explain the model. "
            "Each step recomputes every shown method (LIME or SHAP: minutes on a CPU)."
        )
        sanity_key = (
            bundle.weights_sha256,
            pixels_sha,
            target,
            tuple(shown_maps),
            repr(sorted(settings.items())),
        )
        if st.button("Randomise the model, top layer down", key="sanity-run"):
            bar = st.progress(0.0, text="Computing the trained model's maps…")
            try:
                sanity_rows = cascading_randomisation(
                    bundle,
                    image.pixels,
                    list(shown_maps),
                    target,
                    params=settings,
                    progress=lambda done, total: bar.progress(
                        done / total, text=f"{done} of {total} layer groups randomised"
                    ),
                )
            except CxrxaiError as exc:
                st.error(plain(str(exc)))
            else:
                st.session_state["sanity"] = (sanity_key, sanity_rows)
            bar.empty()
        stored = st.session_state.get("sanity")
        if stored and stored[0] == sanity_key:
            sanity_rows = stored[1]
            chart = sanity_chart(sanity_rows, list(shown_maps))
            st.plotly_chart(chart, width="stretch")
            passed = verdicts(sanity_rows)
            st.dataframe(
                [
                    {
                        "method": method,
                        "spearman, all randomised": round(row.spearman, 3),
                        "SSIM, all randomised": round(row.ssim, 3),
                        "verdict": "passes: the map changes"
                        if passed[method]
                        else "FAILS: the map survives randomisation",
                    }
                    for method, row in deepest(sanity_rows).items()
                ],
                hide_index=True,
            )
