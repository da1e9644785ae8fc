"""Heatmaps as a FRACTIONAL Segmentation: one segment per map (method x label), 8-bit,
at the source's size - the conformant object for a projection radiograph."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom

from cxrxai.errors import CxrxaiError
from cxrxai.pacs.objects.common import (
    FINDING,
    Series,
    algorithm_sequence,
    equipment,
    finish,
    local,
    unit_map,
)
from cxrxai.pacs.results import Algorithm, MapResult

MAX_FRACTION = 255


def heatmap_segmentation(
    source: pydicom.Dataset, maps: tuple[MapResult, ...], algorithm: Algorithm, series: Series
) -> hd.seg.Segmentation:
    """``maps`` must be at the source's size (resample them first); each is stored as
    its positive part over its maximum, quantised to 1/255 ("PROBABILITY" is the closest
    fractional type the standard has; the values are relevance, not probabilities)."""
    shape = (int(source.Rows), int(source.Columns))
    wrong = [m.name for m in maps if m.values.shape != shape]
    if wrong:
        raise CxrxaiError(
            f"Maps {', '.join(wrong)} are not at the source's {shape[1]} x {shape[0]} pixels; "
            "resample them to the source first."
        )
    if not maps:
        raise CxrxaiError("No explanation map to write as a Segmentation.")
    fractions = np.stack([unit_map(m.values) for m in maps], axis=-1)[None]
    segments = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=m.name[:64],
            segmented_property_category=FINDING,
            segmented_property_type=local(m.label, m.label),
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm_sequence(algorithm, m.method, dict(m.settings)),
        )
        for number, m in enumerate(maps, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=fractions,
        segmentation_type="FRACTIONAL",
        segment_descriptions=segments,
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        fractional_type="PROBABILITY",
        max_fractional_value=MAX_FRACTION,
        omit_empty_frames=False,
        content_label="CXRXAI_MAPS",
        content_description="cxrxai explanation maps (relevance, not probability)",
        **equipment(algorithm),
    )
    return finish(seg, source, series)
