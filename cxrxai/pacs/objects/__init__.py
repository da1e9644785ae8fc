"""One radiograph's results as DICOM objects, each in a new series on the source's
study: the TID 1500 SR (root result), the FRACTIONAL SEG of the maps, the GSPS of the
boxes and, optionally, one Secondary Capture overlay per map and (a research option, not
conformant) one float Parametric Map per map. See docs/dicom.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from cxrxai.errors import CxrxaiError
from cxrxai.pacs.objects.capture import overlay_capture
from cxrxai.pacs.objects.common import new_series, prepared_source
from cxrxai.pacs.objects.gsps import box_presentation
from cxrxai.pacs.objects.pmap import heatmap_parametric_map
from cxrxai.pacs.objects.seg import heatmap_segmentation
from cxrxai.pacs.objects.sr import measurement_report
from cxrxai.pacs.results import Algorithm, CaseResult
from cxrxai.pacs.source import PacsSource

SERIES_NUMBERS = {"SR": 9001, "SEG": 9002, "PR": 9003, "OT": 9004, "PM": 9005}


def result_objects(
    source: pydicom.Dataset,
    result: CaseResult,
    algorithm: Algorithm,
    pixels: np.ndarray | None = None,
    parametric_maps: bool = False,
) -> list[pydicom.Dataset]:
    """SR, SEG (when there are maps), GSPS and, when ``pixels`` (the source as cxrxai
    reads it) is given, a Secondary Capture per map; with ``parametric_maps`` a float
    Parametric Map per map (:mod:`cxrxai.pacs.objects.pmap`: research, not conformant)."""
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
    if parametric_maps and result.maps:
        series = new_series(SERIES_NUMBERS["PM"], "parametric maps RESEARCH")
        for number, m in enumerate(result.maps, start=1):
            objects.append(heatmap_parametric_map(fixed, m, algorithm, series, number))
    return objects


def read_source(path: Path) -> pydicom.Dataset:
    """The DICOM image results are filed with, read whole (the objects copy from it)."""
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # not DICOM: nothing to file the results with
        raise CxrxaiError(
            f"'{path}' is no DICOM file: results go back to a PACS on DICOM images only."
        ) from exc


def send_results(
    pacs: PacsSource,
    path: Path,
    result: CaseResult,
    algorithm: Algorithm,
    pixels: np.ndarray | None = None,
    parametric_maps: bool = False,
) -> int:
    """The objects of ``result`` for the DICOM image at ``path``, stored on ``pacs``
    (overlays too when ``pixels`` is given, Parametric Maps when asked); how many were
    sent."""
    objects = result_objects(read_source(path), result, algorithm, pixels, parametric_maps)
    pacs.store(objects)
    return len(objects)
