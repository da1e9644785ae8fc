"""The loaded checkpoint's model card: labels, data, validation metrics."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxrxai.checkpoint import available_checkpoints, load_checkpoint
from cxrxai.environment import MODELS_ENV_VAR, model_folders
from cxrxai.errors import CxrxaiError
from cxrxai.render import plain
from dashboard.review import cam_layers
from dashboard.router import through_the_router
from dashboard.shared import checkpoint_path, require_bundle

through_the_router()

st.title("Model")
with st.expander("Load another checkpoint"):
    # Choices from the configured folders only: a free path typed in a browser would let
    # any visitor load (and probe) any file on the server.
    st.caption(
        f"Checkpoint folders (model_card.json + weights.safetensors, see the README) in "
        f"models/ and the folders listed in ${MODELS_ENV_VAR} on the server."
    )
    choices = [str(path) for path in available_checkpoints(model_folders())]
    current = checkpoint_path()
    chosen = st.selectbox(
        "Checkpoint",
        choices,
        index=choices.index(current) if current in choices else None,
        placeholder="No checkpoint folders found" if not choices else "Choose a checkpoint",
    )
    if st.button("Load", disabled=chosen is None):
        try:
            load_checkpoint(chosen, device="cpu")  # validate before switching the session
        except CxrxaiError as exc:
            st.error(plain(str(exc)))
        else:
            st.session_state["checkpoint_path"] = chosen
            st.success(plain(f"Loaded {chosen}; every page now uses it in this session."))
bundle = require_bundle()

card = bundle.card
st.subheader(plain(card.name or card.architecture))
st.write(
    f"**Architecture:** {plain(card.architecture)} ({card.framework}) · **task:** "
    f"{card.task} · **input:** {card.input_size[1]}×{card.input_size[0]}, "
    f"{card.in_channels} channel(s) · **CAM layer:** {plain(card.target_layer)} · "
    f"**device:** {bundle.device}"
)
st.write("**Labels (output order):** " + ", ".join(plain(label) for label in card.labels))
if card.task == "multilabel":
    st.write(
        "**Operating thresholds** (a label is predicted at or above its threshold; 0.5 "
        "where the card sets none): "
        + ", ".join(f"{plain(label)} {card.threshold(label):.2f}" for label in card.labels)
    )
if card.notes:
    st.caption(plain(card.notes))
metrics = card.validation_metrics
if metrics:
    cols = st.columns(3)
    for col, key in zip(cols, ("accuracy", "macro_auc", "n"), strict=False):
        if key in metrics:
            col.metric(key.replace("_", " "), f"{metrics[key]:.3f}" if key != "n" else metrics[key])
    if "per_class" in metrics:
        st.dataframe(pd.DataFrame(metrics["per_class"]).T, width="stretch")
    if "confusion_matrix" in metrics:
        st.write("**Confusion matrix** (rows: truth, columns: prediction)")
        st.dataframe(
            pd.DataFrame(metrics["confusion_matrix"], index=card.labels, columns=card.labels)
        )
with st.expander("Training details"):
    st.json({k: v for k, v in card.training.items() if k != "history"})
with st.expander("Layers for CAM methods"):
    st.caption(
        "Every layer with a spatial output, in the order the outputs are produced (a "
        "stage after its own layers). Compare layers under Review → Method settings, or "
        "with `--param gradcam.layer=NAME` on the command line."
    )
    st.dataframe(
        [
            {
                "layer": name,
                "channels": c,
                "height": h,
                "width": w,
                "card default": "✓" if name == card.target_layer else "",
            }
            for name, c, h, w in cam_layers(bundle, bundle.weights_sha256)
        ],
        hide_index=True,
        width="stretch",
    )
