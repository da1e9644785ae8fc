"""Draw an X-ray with its annotations as an RGB picture (for the UI and for reports).

Boxes get one colour per author (radiologist), masks are drawn as outlines so the image
underneath stays readable.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrxai.cases import Annotation

# Colour-blind-safe palette (Okabe-Ito), RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
)


def author_colours(annotations: list[Annotation]) -> dict[str, tuple[int, int, int]]:
    """A stable colour per author, in order of first appearance."""
    colours: dict[str, tuple[int, int, int]] = {}
    for annotation in annotations:
        key = annotation.author or "unknown"
        if key not in colours:
            colours[key] = PALETTE[len(colours) % len(PALETTE)]
    return colours


def draw_annotations(
    pixels: np.ndarray, annotations: list[Annotation], line_px: int | None = None
) -> np.ndarray:
    """HxW float image in [0, 1] -> HxWx3 uint8 RGB with boxes, mask outlines and points."""
    rgb = cv2.cvtColor((np.clip(pixels, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    height, width = pixels.shape
    thickness = line_px or max(1, round(max(height, width) / 300))
    colours = author_colours(annotations)
    for annotation in annotations:
        colour = colours[annotation.author or "unknown"]
        if annotation.kind == "box" and annotation.box is not None:
            x0, y0, x1, y1 = (round(v) for v in annotation.box)
            cv2.rectangle(rgb, (x0, y0), (x1, y1), colour, thickness)
        elif annotation.kind == "point" and annotation.point is not None:
            centre = (round(annotation.point[0]), round(annotation.point[1]))
            cv2.circle(rgb, centre, 3 * thickness, colour, thickness)
        elif annotation.kind == "mask":
            mask = annotation.to_mask((height, width)).astype(np.uint8)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(rgb, contours, -1, colour, thickness)
    return rgb
