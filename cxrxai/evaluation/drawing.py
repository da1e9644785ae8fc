"""The reader's own boxes, drawn with the mouse: a plotly figure of the image in which a
box selection is a box (Streamlit returns the selection to the page), and the selection
turned back into boxes in the image's pixels.

Built on plotly's box selection rather than a custom component: Streamlit passes plotly's
selection events to Python (``st.plotly_chart(on_select=...)``), so no JavaScript of ours
runs in the browser.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go

from cxrxai.cases import Annotation

DRAW_SIDE = 640  # the drawing image's longest side, in screen pixels
MAX_BOXES = 20


def drawing_scale(shape: tuple[int, int], side: int = DRAW_SIDE) -> float:
    """Image pixels per drawing pixel (>= 1: large radiographs are shown smaller)."""
    return max(1.0, max(shape) / side)


def drawing_figure(
    picture: np.ndarray, shape: tuple[int, int], boxes: Sequence[Annotation] = ()
) -> go.Figure:
    """``picture`` (HxWx3 uint8, what the reader sees) at most :data:`DRAW_SIDE` px a
    side, axes in the image's own pixels, the reader's ``boxes`` outlined; drag to draw."""
    scale = drawing_scale(shape)
    height, width = shape
    small = cv2.resize(
        picture,
        (max(1, round(width / scale)), max(1, round(height / scale))),
        interpolation=cv2.INTER_AREA,
    )
    # as a PNG data URI: a few hundred kB instead of 1.2 M numbers as JSON
    _, png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    source = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii")
    figure = go.Figure(go.Image(source=source, dx=scale, dy=scale, hoverinfo="skip", name="image"))
    # an invisible grid of points over the image: plotly selects points, so a box drawn
    # anywhere on the image is reported (with its corners) even over empty areas
    xs, ys = np.meshgrid(np.linspace(0, width, 24), np.linspace(0, height, 24))
    figure.add_trace(
        go.Scatter(
            x=xs.ravel(),
            y=ys.ravel(),
            mode="markers",
            marker={"opacity": 0},
            hoverinfo="skip",
            showlegend=False,
            name="grid",
        )
    )
    for annotation in boxes:
        if annotation.box is not None:
            x0, y0, x1, y1 = annotation.box
            figure.add_shape(
                type="rect",
                x0=x0,
                y0=y0,
                x1=x1,
                y1=y1,
                line={"color": "#00e5ff", "width": 2},
            )
    figure.update_layout(
        dragmode="select",
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=min(DRAW_SIDE, round(height / scale)),
        xaxis={"visible": False, "range": [0, width]},
        yaxis={"visible": False, "range": [height, 0], "scaleanchor": "x"},
    )
    return figure


def boxes_from_selection(
    selection: Mapping[str, Any] | None, shape: tuple[int, int], label: str, author: str
) -> list[Annotation]:
    """The boxes of a plotly selection event (``{"box": [{"x": [..], "y": [..]}, ...]}``),
    in image pixels, clipped to the image; anything malformed, empty or not finite is
    dropped (the event comes from the browser), at most :data:`MAX_BOXES`."""
    height, width = shape
    found: list[Annotation] = []
    raw = (selection or {}).get("box") or []
    if not isinstance(raw, list):
        return found
    for entry in raw[:MAX_BOXES]:
        try:
            xs = [float(v) for v in entry["x"]]
            ys = [float(v) for v in entry["y"]]
        except (KeyError, TypeError, ValueError):
            continue
        if len(xs) < 2 or len(ys) < 2 or not all(math.isfinite(v) for v in xs + ys):
            continue
        x0, x1 = max(0.0, min(xs)), min(float(width), max(xs))
        y0, y1 = max(0.0, min(ys)), min(float(height), max(ys))
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        found.append(Annotation("box", label, author, box=(x0, y0, x1, y1)))
    return found
