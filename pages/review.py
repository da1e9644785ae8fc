"""Review one case: the X-ray with its annotations, explanation panels side by side, live
localisation metrics, a radiologist's own box, and the deletion curve on demand."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from cxrxai.cases import Case, findings_of
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
from cxrxai.runner import ModelBundle
from cxrxai.xray import XRayImage
from dashboard.pacs import send_to_pacs
from dashboard.review import (
    background_status,
    get_uploaded_image,
    lung_fields,
    method_settings,
    ood_warning,
    slow_methods,
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

REGION_VALUES = {  # slider (min, max, default, step) per region mode
    "top-percent": (1.0, 50.0, 10.0, 1.0),
    "threshold": (0.05, 0.95, 0.5, 0.05),
    "otsu": None,
    "top-superpixels": (1.0, 20.0, 5.0, 1.0),
}


@dataclass(frozen=True)
class Choices:
    """What the reader chose in the sidebar."""

    upload: Any  # an UploadedFile, or None for the chosen case
    case: Case
    show_truth: bool
    truth_on_panels: bool
    methods: list[str]
    settings: dict[str, dict]
    per_row: int
    opacity: float
    colormap: str
    mode: str
    value: float
    show_region: bool
    within_lungs: bool
    show_lungs: bool
    zero_empty: bool

    @property
    def empty(self) -> str:
        return "zero" if self.zero_empty else "nan"


@dataclass
class Shown:
    """The image as the model reads it and as the reader sees it, with what is drawn on
    it and the label explained."""

    image: XRayImage
    pixels: np.ndarray  # for display: the reader's window, brightness and contrast
    window: tuple[float, float] | None
    title: str
    annotations: list
    lung_outline: Any
    pixels_sha: str
    probabilities: np.ndarray
    target_label: str = ""
    target: int = 0

    @functools.cached_property
    def lungs(self) -> np.ndarray | None:
        """The lung fields as a mask, rasterised once per run (every panel scores with it)."""
        if self.lung_outline is None:
            return None
        return self.lung_outline.to_mask(self.image.pixels.shape)


def title() -> None:
    """The title and the ways in (shown even when the model cannot be loaded)."""
    st.title("Case review")
    intro, *starts = st.columns([4, 1, 1, 1])
    intro.markdown(
        "**cxrxai** shows where a chest X-ray classifier's explanations look, next to the "
        "radiologists' marks, and measures how well they agree."
    )
    starts[0].page_link("pages/review.py", label="Review a demo case", icon=":material/radiology:")
    starts[1].page_link(
        "pages/cases.py", label="Browse the evaluation", icon=":material/table_view:"
    )
    starts[2].page_link("pages/study_admin.py", label="Run a study", icon=":material/how_to_vote:")


def demo_cases(bundle: ModelBundle) -> list[Case]:
    """The cases to review, with what is wrong with them said."""
    root = data_root()
    # Demo cases the loaded model can score (a label among its outputs), or unlabelled ones.
    extra = st.session_state.get("extra_cases", [])
    all_cases = scorable(get_demo_cases(str(root)) + extra, bundle.labels) or get_demo_cases(
        str(root)
    )
    address_problems = apply_address(all_cases, bundle.labels)
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
    return all_cases


def sidebar(bundle: ModelBundle, all_cases: list[Case]) -> Choices:
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
            help=f"{slow_methods()} take tens of seconds on a CPU when not cached",
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
    return Choices(
        upload,
        next(c for c in cases if c.case_id == case_id),
        show_truth,
        truth_on_panels,
        methods,
        settings,
        per_row,
        opacity,
        colormap,
        mode,
        value,
        show_region,
        within_lungs,
        show_lungs,
        zero_empty,
    )


def open_image(bundle: ModelBundle, choices: Choices) -> Shown:
    """The case's (or upload's) image, the reader's display settings, the lung fields and
    the model's probabilities; a clear error (and a stop) for a file that cannot be read."""
    upload, case = choices.upload, choices.case
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
    window, brightness, contrast = display_controls(base_image)
    # The model, the maps and the metrics read the image as stored (the file's own VOI LUT
    # or window for DICOM); the reader's window, brightness and contrast are display only,
    # so moving them recomputes nothing (a manual window moved the prediction 0.600 ->
    # 0.553).
    pixels = display_pixels(
        (base_image if window is None else base_image.with_window(*window)).pixels,
        brightness,
        contrast,
    )
    pixels_sha = image_hash(base_image.pixels)  # once per run: every panel's cache key
    lung_outline = lung_fields(None if upload is not None else case, base_image.pixels, pixels_sha)
    if lung_outline is not None and lung_outline.predicted:
        annotations = [a for a in annotations if not (a.role == "anatomy" and a.label == "lungs")]
        annotations.append(lung_outline)
    probabilities = np.array(get_probabilities(bundle, bundle.weights_sha256, base_image.pixels))
    return Shown(
        base_image,
        pixels,
        window or base_image.meta.window,
        title,
        annotations,
        lung_outline,
        pixels_sha,
        probabilities,
    )


def display_controls(image: XRayImage) -> tuple[tuple[float, float] | None, float, float]:
    """The sidebar's window (DICOM with modality values), brightness and contrast."""
    with st.sidebar:
        presets = list(image.meta.window_presets)
        window = None
        if image.modality_values is not None:
            st.subheader("Window")
            options = ["file default", *[f"{c:g} / {w:g}" for c, w in presets], "manual"]
            choice = st.selectbox("Window level / width", options)
            if choice == "manual":
                center = st.number_input(
                    "Level (center)", value=float(np.median(image.modality_values))
                )
                width = st.number_input(
                    "Width", min_value=1.0, value=float(np.ptp(image.modality_values) or 1.0)
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
    return window, brightness, contrast


def choose_target(bundle: ModelBundle, choices: Choices, shown: Shown) -> None:
    """The label explained: the one a Cases page row asked for, else the model's."""
    case_id = choices.case.case_id
    predicted = bundle.card.explained_by_default(shown.probabilities)
    request = st.session_state.get("review_request") or {}  # opened from the Cases page
    requested = (
        request.get("target")
        if request.get("case_id") == case_id and choices.upload is None
        else None
    )
    shown.target_label = st.sidebar.selectbox(
        "Explain the label",
        bundle.labels,
        index=bundle.labels.index(requested) if requested in bundle.labels else predicted,
        help="default: the predicted label (multi-label: the most probable above its threshold)",
    )
    shown.target = bundle.labels.index(shown.target_label)
    write_address(
        None if choices.upload is not None else case_id,
        shown.target_label,
        choices.methods,
        choices.settings,
    )


def own_boxes(shown: Shown) -> None:
    """The reader's own boxes, drawn on the image; scored against instead of the
    annotations when asked."""
    with st.expander("Draw your own boxes (drag on the image)"):
        author = st.text_input("Your name", max_chars=60, key="own-author")
        use_own = st.toggle("Score the explanations against my boxes", value=False)
        # one drawing per image: boxes never carry over to the next case
        draw_key = f"draw-{st.session_state.get('draw_round', 0)}-{shown.title}"
        event = st.plotly_chart(
            # the same figure on every rerun (the image as stored, not the display
            # settings): a changed figure would drop the selection
            drawing_figure(draw_annotations(shown.image.pixels, []), shown.image.shape),
            on_select="rerun",
            selection_mode="box",
            key=draw_key,
            config={"displayModeBar": False},
        )
        boxes = boxes_from_selection(
            (event or {}).get("selection"),
            shown.image.shape,
            shown.target_label,
            (author or "me").strip(),
        )
        if st.button("Clear my boxes", disabled=not boxes):
            st.session_state["draw_round"] = st.session_state.get("draw_round", 0) + 1
            st.rerun()
        st.caption(
            f"{len(boxes)} box(es) drawn; drag again (Shift: add another) to draw more."
            if boxes
            else "Drag a box on the image; hold Shift to add more."
        )
    if use_own and boxes:
        shown.annotations = [a for a in shown.annotations if a.role != "finding"] + boxes


def case_column(bundle: ModelBundle, choices: Choices, shown: Shown, colours: dict) -> None:
    """The image with its annotations, the prediction and what the file says."""
    drawn = [
        a
        for a in shown.annotations
        if (choices.show_truth and a.role != "anatomy")
        or (choices.show_lungs and a.role == "anatomy")
    ]
    picture = draw_annotations(shown.pixels, drawn, colours=colours)
    st.image(for_screen(picture), caption=shown.title, width="stretch")
    readers = sorted({a.author or "unknown" for a in shown.annotations if a.role != "anatomy"})
    if choices.show_truth and readers:
        st.caption(
            f"Annotations by: {plain(', '.join(readers))}. Masks as outlines, boxes per "
            "radiologist; on the panels: the heatmap's region in green, its boxes in yellow."
        )
    outline = shown.lung_outline
    if choices.show_lungs and outline is not None:
        st.caption(
            f"Lung fields (blue): {plain(outline.author or 'dataset')}"
            + (
                " — dashed: a model's outline, not a radiologist's"
                if outline.predicted
                else " (the dataset's lung mask)"
            )
        )
    if warning := ood_warning(shown.image.pixels, shown.pixels_sha):
        st.warning(warning, icon="⚠️")
    st.metric(
        "Predicted",
        bundle.card.diagnosis(shown.probabilities),
        help=f"{bundle.card.task} model"
        + (
            ": labels at or above their operating threshold (black ticks)"
            if bundle.card.task == "multilabel"
            else ""
        ),
    )
    if choices.upload is None and choices.case.labels:
        st.write(f"**Reference label(s):** {plain(', '.join(choices.case.labels))}")
    meta, window = shown.image.meta, shown.window
    st.write(
        f"**Image:** {meta.file_format}, {meta.shape[1]}×{meta.shape[0]} px, "
        f"{meta.bits_stored} bits"
        + (f", {plain(meta.photometric_interpretation)}" if meta.photometric_interpretation else "")
        + (f", view {plain(meta.view_position)}" if meta.view_position else "")
        + (f", window {window[0]:g}/{window[1]:g}" if window else "")
    )
    with st.expander("Probabilities"):
        st.plotly_chart(probability_chart(bundle.card, shown.probabilities), width="stretch")


def explanation_panel(
    bundle: ModelBundle, choices: Choices, shown: Shown, method: str, colours: dict
) -> tuple[Any, np.ndarray, np.ndarray, dict | None] | None:
    """One method's panel: the map over the image, its region, its shares and metrics;
    (the heatmap, its values as NumPy, its region, the metrics row when the label has a
    truth), None when the map could not be made (the error is shown)."""
    image, settings, lungs = shown.image, choices.settings, shown.lungs
    spacing = image.meta.pixel_spacing_mm
    unit = "mm" if spacing else "px"
    try:
        with st.spinner(f"Computing {method}…"):
            heatmap = explain_cached(
                bundle, image.pixels, method, shown.target, settings.get(method), shown.pixels_sha
            )
        region, boxes, row = region_setting_metrics(
            heatmap,
            shown.annotations,
            shown.target_label,
            choices.mode,
            choices.value,
            choices.empty,
            lungs,
            spacing,
            choices.within_lungs and lungs is not None,
        )
    except CxrxaiError as exc:
        st.error(plain(str(exc)))
        return None
    values = heatmap.numpy()
    picture = overlay(shown.pixels, values, choices.opacity, colormap=choices.colormap)
    if choices.show_region:
        picture = draw_region(picture, region, boxes)
    if choices.show_truth and choices.truth_on_panels:
        scored = findings_of(shown.annotations, shown.target_label)
        picture = draw_annotations(picture, scored, colours=colours, halo=True)
    own_settings = describe_params(settings.get(method, {}))
    caption = f"{method} for {heatmap.target_label}"
    st.image(
        for_screen(picture),
        width="stretch",
        caption=f"{caption} ({own_settings})" if own_settings else caption,
    )
    st.download_button(
        "Download this panel (PNG)",
        lambda: png_bytes(picture),  # encoded on click, not every rerun
        file_name=f"{shown.title.replace('/', '_')}-{method}-{heatmap.target_label}.png",
        mime="image/png",
        key=f"png-{method}",
    )
    made = (
        f"from the cache (made in {heatmap.seconds:.2f} s)"
        if heatmap.from_cache
        else f"computed in {heatmap.seconds:.2f} s"
    )
    st.caption(
        f"{colour_legend(values, heatmap.target_label, choices.colormap)} · {made} · "
        f"region {int(region.sum())} px"
    )
    st.caption(shortcut_caption(row))
    if shortcut(row.get("lung_relevance")):
        st.warning(
            f"Most of this map's positive relevance lies outside the lungs "
            f"({1 - row['lung_relevance']:.0%}): it may point at a shortcut (markers, "
            "text, devices, the frame) rather than at the chest."
        )
    has_truth = any(
        a.role == "finding" and a.label == shown.target_label for a in shown.annotations
    )
    metrics = None
    if has_truth:
        st.table(describe(row, unit))
        metrics = {
            "case": shown.title,
            "method": variant(method, settings.get(method, {})),
            "target": shown.target_label,
            "region": choices.mode,
            "region value": choices.value,
            "unit": unit,
        } | row
    else:
        st.caption(
            f"No annotation of '{plain(shown.target_label)}' on this case: no overlap metrics."
        )
    if st.button("Deletion / insertion curve", key=f"curve-{method}"):
        with st.spinner("Re-predicting perturbed images…"):
            curves = deletion_insertion(bundle, image.pixels, heatmap.values, shown.target)
        st.plotly_chart(deletion_insertion_chart(curves, shown.target_label), width="stretch")
    return heatmap, values, region, metrics


def pacs_section(bundle: ModelBundle, choices: Choices, shown: Shown, heatmaps: list) -> None:
    """Send the shown maps to a PACS, on the image's study (DICOM cases only)."""
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
        parametric = st.checkbox(
            "Also float Parametric Maps (research: not conformant)",
            help="a radiograph has no frame of reference: one is invented (docs/dicom.md)",
        )
        if st.button("Send to PACS", disabled=not pacs_address, key="send-pacs"):
            lungs = shown.lungs
            try:
                with st.spinner("Writing and sending the DICOM objects…"):
                    count = send_to_pacs(
                        pacs_address,
                        choices.case.image_path,
                        bundle,
                        shown.image,
                        heatmaps,
                        shown.annotations,
                        lungs,
                        (choices.mode, choices.value),
                        choices.within_lungs and lungs is not None,
                        choices.empty,
                        overlays,
                        parametric,
                    )
            except CxrxaiError as exc:
                st.error(plain(str(exc)))
            else:
                st.session_state["pacs_address"] = pacs_address
                st.success(f"Sent {count} DICOM objects to {plain(pacs_address)}.")


def sanity_section(bundle: ModelBundle, choices: Choices, shown: Shown, methods: list[str]) -> None:
    """Cascading model-parameter randomisation of the shown methods, on request."""
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
            shown.pixels_sha,
            shown.target,
            tuple(methods),
            repr(sorted(choices.settings.items())),
        )
        if st.button("Randomise the model, top layer down", key="sanity-run"):
            bar = st.progress(0.0, text="Computing the trained model's maps…")
            try:
                sanity_rows = cascading_randomisation(
                    bundle,
                    shown.image.pixels,
                    methods,
                    shown.target,
                    params=choices.settings,
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
            st.plotly_chart(sanity_chart(sanity_rows, methods), width="stretch")
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


def main() -> None:
    through_the_router()
    title()
    bundle = require_bundle()
    choices = sidebar(bundle, demo_cases(bundle))
    shown = open_image(bundle, choices)
    choose_target(bundle, choices, shown)
    methods = choices.methods
    # One row: the case, then the first panels (at 1440 x 900 they show without
    # scrolling); the reader's drawing under it; further panels in rows below.
    per_row = choices.per_row
    chunks = [methods[i : i + per_row] for i in range(0, len(methods), per_row)] or [[]]
    first_row = st.columns(1 + len(chunks[0]), gap="small")
    drawing_area = st.container()
    panels = first_row[1:] + [
        column for chunk in chunks[1:] for column in st.columns(per_row)[: len(chunk)]
    ]
    with drawing_area:
        own_boxes(shown)
    colours = author_colours(shown.annotations)
    with first_row[0]:
        case_column(bundle, choices, shown, colours)
    maps: dict[str, np.ndarray] = {}
    heatmaps: list = []  # for "Send to PACS"
    regions: dict[str, np.ndarray] = {}
    case_metrics: list[dict] = []  # every panel's metrics, for one CSV
    for panel, method in zip(panels, methods, strict=True):
        with panel:
            made = explanation_panel(bundle, choices, shown, method, colours)
        if made is not None:
            heatmap, maps[method], regions[method], metrics = made  # values made once
            heatmaps.append(heatmap)
            if metrics is not None:
                case_metrics.append(metrics)
    if case_metrics:
        st.download_button(
            "Download this case's metrics (CSV)",
            lambda: csv_text(case_metrics),
            file_name=f"{shown.title.replace('/', '_')}-{shown.target_label}-metrics.csv",
            mime="text/csv",
            key="metrics-csv",
        )
    if heatmaps and choices.upload is None and shown.image.meta.file_format == "DICOM":
        pacs_section(bundle, choices, shown, heatmaps)
    if len(maps) >= 2:
        st.subheader("Agreement between the maps")
        st.dataframe(map_agreement(maps, regions), hide_index=True)
        st.caption(
            "Per pair: Spearman rank correlation of |values| and SSIM of the maps (as the "
            "sanity check compares a map with its randomised self; at most 256 px a side), "
            "and the IoU of the two regions at the current region setting."
        )
    if maps:
        sanity_section(bundle, choices, shown, list(maps))


main()
