"""Region and truth boxes as a Grayscale Softcopy Presentation State: graphic
annotations any PACS viewer that reads GSPS draws over the source, shown with the
source's own window."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom

from cxrxai.pacs.objects.common import Series, equipment, finish, rectangle
from cxrxai.pacs.results import Algorithm, CaseResult


def box_presentation(
    source: pydicom.Dataset, result: CaseResult, algorithm: Algorithm, series: Series
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    layers = {
        "regions": hd.pr.GraphicLayer("CXRXAI_REGIONS", 1, "explanation map regions"),
        "truth": hd.pr.GraphicLayer("CXRXAI_TRUTH", 2, "annotated truth boxes"),
    }
    annotations = []
    for m in result.maps:
        if m.boxes:
            annotations.append(_annotation(source, layers["regions"], m.boxes, m.name))
    for truth in result.truth:
        who = f" ({truth.author})" if truth.author else ""
        annotations.append(
            _annotation(source, layers["truth"], (truth.box,), f"truth {truth.label}{who}")
        )
    used = [
        layer
        for layer in layers.values()
        if any(a.GraphicLayer == layer.GraphicLayer for a in annotations)
    ]
    pr = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        content_label="CXRXAI_BOXES",
        content_description="cxrxai region and truth boxes",
        graphic_annotations=annotations or None,
        graphic_layers=used or None,
        voi_lut_transformations=_window(source),
        **equipment(algorithm),
    )
    return finish(pr, source, series)


def _annotation(
    source: pydicom.Dataset, layer: hd.pr.GraphicLayer, boxes, text: str
) -> hd.pr.GraphicAnnotation:
    x0, y0 = float(boxes[0][0]), float(boxes[0][1])
    return hd.pr.GraphicAnnotation(
        referenced_images=[source],
        graphic_layer=layer,
        graphic_objects=[
            hd.pr.GraphicObject(graphic_type="POLYLINE", graphic_data=rectangle(box), units="PIXEL")
            for box in boxes
        ],
        text_objects=[
            hd.pr.TextObject(
                text_value=text[:64], units="PIXEL", anchor_point=(x0, max(y0 - 4.0, 0.0))
            )
        ],
    )


def _window(source: pydicom.Dataset) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    """The source's first window, else its pixel data's full range (what cxrxai shows)."""
    center, width = source.get("WindowCenter"), source.get("WindowWidth")
    if center is not None and width is not None:
        first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)  # noqa: E731
        if first(width) >= 1:
            return [hd.pr.SoftcopyVOILUTTransformation(first(center), first(width))]
    pixels = source.pixel_array
    low, high = float(np.min(pixels)), float(np.max(pixels))
    return [hd.pr.SoftcopyVOILUTTransformation((low + high) / 2, max(high - low, 1.0))]
