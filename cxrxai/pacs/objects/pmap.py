"""Heatmaps as float Parametric Maps: a RESEARCH option, not conformant for a projection
radiograph.

A Parametric Map keeps a map's values unquantised (the SEG keeps 1/255 of its maximum),
but the IOD requires a frame of reference and plane geometry, which a projection
radiograph does not have. highdicom 0.26-0.28 refuses a single-frame CR/DX without them
("Unexpected mismatch between dimension index values"); here the source is given an
invented frame of reference and an identity plane (orientation 1\\0\\0\\0\\1\\0, position
0\\0\\0, the source's pixel spacing or 1 mm) on a copy, so highdicom builds the object and
dciodvfy finds no error - but its geometry means nothing: a viewer that registers it in
3-D with other objects of the study is misled. Each object says so in its content
description and series description. Off by default (``--parametric-maps``).
"""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
import pydicom

from cxrxai.errors import CxrxaiError
from cxrxai.pacs.objects.common import Series, equipment, finish
from cxrxai.pacs.results import Algorithm, MapResult

NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
RESEARCH_NOTE = "RESEARCH: invented frame of reference"


def heatmap_parametric_map(
    source: pydicom.Dataset, m: MapResult, algorithm: Algorithm, series: Series, number: int
) -> hd.pm.ParametricMap:
    """One map (at the source's size) as a 32-bit float Parametric Map, its values as
    the method gave them (signed maps keep their sign)."""
    shape = (int(source.Rows), int(source.Columns))
    if m.values.shape != shape:
        raise CxrxaiError(
            f"Map {m.name} is not at the source's {shape[1]} x {shape[0]} pixels; resample "
            "it to the source first."
        )
    values = np.nan_to_num(m.values.astype(np.float32), nan=0.0)
    low, high = float(values.min()), float(values.max())
    if high <= low:  # a constant map: any non-empty range
        high = low + 1.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="relevance",
        lut_explanation=f"{m.method} relevance for {m.label}"[:64],
        unit=NO_UNITS,
        value_range=(low, high),
        intercept=0.0,
        slope=1.0,
    )
    pm = hd.pm.ParametricMap(
        source_images=[_planar(source)],
        pixel_array=values[None],
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=number,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[  # LINEAR_EXACT: a width under 1 (CAMs are 0-1) is valid
            hd.VOILUTTransformation(
                window_center=(low + high) / 2,
                window_width=high - low,
                voi_lut_function=hd.VOILUTFunctionValues.LINEAR_EXACT,
            )
        ],
        content_label=f"CXRXAI_PM{number}"[:16],
        content_description=f"cxrxai {m.name} ({RESEARCH_NOTE})"[:64],
        **equipment(algorithm),
    )
    return finish(pm, source, series)


def _planar(source: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of the source with the invented geometry highdicom needs (module text)."""
    planar = copy.deepcopy(source)
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    planar.PixelSpacing = [float(v) for v in spacing]
    planar.FrameOfReferenceUID = hd.UID()
    planar.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    planar.ImagePositionPatient = [0.0, 0.0, 0.0]
    planar.SliceThickness = 1.0
    return planar
