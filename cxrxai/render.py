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
    image: np.ndarray,
    annotations: list[Annotation],
    line_px: int | None = None,
    colours: dict[str, tuple[int, int, int]] | None = None,
    halo: bool = False,
) -> np.ndarray:
    """Boxes, mask outlines and points drawn on a copy of ``image`` (HxW float in [0, 1],
    or HxWx3 uint8 RGB such as a heatmap overlay) -> HxWx3 uint8 RGB.

    ``colours``: per author (default :func:`author_colours` of ``annotations``; pass the
    whole case's to keep colours when drawing a subset). ``halo``: each shape over a black
    line 2 px thicker, so an outline stays visible on a heatmap of any colour.
    """
    if image.ndim == 2:
        rgb = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    else:
        rgb = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = rgb.shape[:2]
    thickness = line_px or max(1, round(max(height, width) / 300))
    colours = colours or author_colours(annotations)
    passes = [(HALO_COLOUR, 2), (None, 0)] if halo else [(None, 0)]
    for fixed, wider in passes:
        for annotation in annotations:
            colour = fixed or colours.get(annotation.author or "unknown", PALETTE[0])
            if fixed is None and annotation.role == "anatomy":  # lung fields: thin, muted
                colour = ANATOMY_COLOUR
            _draw_shape(rgb, annotation, colour, thickness, wider)
    return rgb


def _draw_shape(
    rgb: np.ndarray,
    annotation: Annotation,
    colour: tuple[int, int, int],
    thickness: int,
    wider: int = 0,
) -> None:
    """One annotation with lines ``wider`` px thicker than ``thickness`` (same geometry)."""
    line = thickness + wider
    if annotation.kind == "box" and annotation.box is not None:
        x0, y0, x1, y1 = (round(v) for v in annotation.box)
        cv2.rectangle(rgb, (x0, y0), (x1, y1), colour, line)
    elif annotation.kind == "point" and annotation.point is not None:
        centre = (round(annotation.point[0]), round(annotation.point[1]))
        cv2.circle(rgb, centre, 3 * thickness, colour, line)
    elif annotation.kind == "mask":
        mask = annotation.to_mask(rgb.shape[:2]).astype(np.uint8)
        if annotation.predicted:  # a model's outline: dashed, never like a radiologist's
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            dash = max(4, 6 * thickness)
            for contour in contours:
                points = contour[:, 0, :]
                for start in range(0, len(points) - 1, 2 * dash):
                    piece = points[start : start + dash + 1]
                    cv2.polylines(rgb, [piece], False, colour, line)
            return
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, colour, line)


ANATOMY_COLOUR = (90, 160, 210)
HALO_COLOUR = (0, 0, 0)
COLORMAPS = ("inferno", "jet", "viridis", "magma", "gray")


def is_signed(values: np.ndarray) -> bool:
    """Whether a map is drawn as signed (diverging colours): it has a negative value."""
    return bool(np.nan_to_num(np.asarray(values, dtype=np.float32)).min() < 0)


def colour_legend(values: np.ndarray, label: str, colormap: str = "inferno") -> str:
    """How to read :func:`heatmap_colours` for this map, in words, for a caption."""
    if is_signed(values):
        return f"red: evidence for {label}, blue: against; white: none (0)"
    return f"{colormap}: this map's lowest to highest value (relative, not a probability)"


def heatmap_colours(
    values: np.ndarray, signed: bool | None = None, colormap: str = "inferno"
) -> np.ndarray:
    """HxW map -> HxWx3 uint8 RGB. Non-negative maps (CAMs) use ``colormap`` from their min
    to their max; signed maps (LRP, SHAP, LIME) a diverging ``RdBu_r`` centred on 0 (red =
    for the target, blue = against), scaled by the largest magnitude."""
    from matplotlib import colormaps

    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    if signed is None:
        signed = is_signed(values)
    if signed:
        scale = float(np.abs(values).max()) or 1.0
        unit = values / (2 * scale) + 0.5
        cmap = colormaps["RdBu_r"]
    else:
        low, high = float(values.min()), float(values.max())
        unit = (values - low) / ((high - low) or 1.0)
        cmap = colormaps[colormap]
    # bytes=True: matplotlib's uint8 table, the same values as (float RGBA * 255) cast,
    # without the float64 RGBA image (32 bytes a pixel: 590 MB for a 4,300 px radiograph)
    return cmap(np.clip(unit, 0, 1), bytes=True)[:, :, :3]


def display_pixels(
    pixels: np.ndarray, brightness: float = 0.0, contrast: float = 1.0
) -> np.ndarray:
    """What the reader sees of [0, 1] pixels: contrast about mid-grey, then brightness,
    clipped to [0, 1]. Display only: the model never reads these."""
    if brightness == 0.0 and contrast == 1.0:
        return pixels
    adjusted = (pixels.astype(np.float32) - 0.5) * contrast + 0.5 + brightness
    return np.clip(adjusted, 0.0, 1.0)


def overlay(
    pixels: np.ndarray,
    values: np.ndarray,
    alpha: float = 0.45,
    signed: bool | None = None,
    colormap: str = "inferno",
) -> np.ndarray:
    """The X-ray (gray) blended with the coloured heatmap; same geometry as the image."""
    if pixels.shape != values.shape:
        raise ValueError(f"image {pixels.shape} and heatmap {values.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    gray = cv2.cvtColor((np.clip(pixels, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB)
    colours = heatmap_colours(values, signed, colormap)
    return cv2.addWeighted(colours, alpha, gray, 1.0 - alpha, 0.0)


SCREEN_SIDE = 1024  # a panel is a few hundred screen pixels wide


def for_screen(rgb: np.ndarray, max_side: int = SCREEN_SIDE) -> np.ndarray:
    """A picture at most ``max_side`` px a side, for the page (downloads keep the full
    size): a 1841 x 1955 radiograph's three pictures were 30 MB of PNG per rerun."""
    height, width = rgb.shape[:2]
    scale = max(height, width) / max_side
    if scale <= 1:
        return rgb
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An HxWx3 uint8 RGB picture as PNG file contents (downloads, reports)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} {rgb.dtype} picture as PNG")
    return encoded.tobytes()


def draw_region(
    rgb: np.ndarray,
    region: np.ndarray,
    boxes: list[tuple[int, int, int, int]] = (),  # type: ignore[assignment]
    colour: tuple[int, int, int] = (0, 255, 120),
) -> np.ndarray:
    """A copy of ``rgb`` with the region's outline and its boxes (x0, y0, x1, y1) drawn."""
    out = rgb.copy()
    thickness = max(1, round(max(region.shape) / 300))
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    cv2.drawContours(out, contours, -1, colour, thickness)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 255, 0), thickness)
    return out


_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:$=\"'&")


def plain(text: object) -> str:
    """``text`` (a card's name or notes, a label, a case id, a file name, an error naming
    one) escaped for a Markdown element, so it shows as typed: no link or image that
    makes a visitor's browser fetch from elsewhere, no formatting, no LaTeX or emoji
    codes. Every ASCII punctuation mark is backslash-escaped (CommonMark allows it);
    line breaks become spaces. Written here because Streamlit has no escape function."""
    flat = " ".join(str(text).splitlines())
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in flat)
