"""One radiograph's results as DICOM objects, each in a new series on the source's
study: the TID 1500 SR (root result), the FRACTIONAL SEG of the maps, the GSPS of the
boxes and, optionally, one Secondary Capture overlay per map. See docs/dicom.md."""

from __future__ import annotations

import numpy as np
import pydicom

from cxrxai.pacs.objects.capture import overlay_capture
from cxrxai.pacs.objects.common import new_series, prepared_source
from cxrxai.pacs.objects.gsps import box_presentation
from cxrxai.pacs.objects.seg import heatmap_segmentation
from cxrxai.pacs.objects.sr import measurement_report
from cxrxai.pacs.results import Algorithm, CaseResult

SERIES_NUMBERS = {"SR": 9001, "SEG": 9002, "PR": 9003, "OT": 9004}


def result_objects(
    source: pydicom.Dataset,
    result: CaseResult,
    algorithm: Algorithm,
    pixels: np.ndarray | None = None,
) -> list[pydicom.Dataset]:
    """SR, SEG (when there are maps), GSPS and, when ``pixels`` (the source as cxrxai
    reads it) is given, a Secondary Capture per map."""
    fixed = prepared_source(source)
    objects: list[pydicom.Dataset] = [
        measurement_report(fixed, result, algorithm, new_series(SERIES_NUMBERS["SR"], "report"))
    ]
    if result.maps:
        objects.append(
            heatmap_segmentation(
                fixed, result.maps, algorithm, new_series(SERIES_NUMBERS["SEG"], "explanation maps")
            )
        )
    objects.append(
        box_presentation(fixed, result, algorithm, new_series(SERIES_NUMBERS["PR"], "boxes"))
    )
    if pixels is not None and result.maps:
        series = new_series(SERIES_NUMBERS["OT"], "overlays NOT FOR DIAGNOSIS")
        for number, m in enumerate(result.maps, start=1):
            objects.append(overlay_capture(fixed, pixels, m, series, number))
    return objects
