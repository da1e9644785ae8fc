"""An RGB Secondary Capture per map: the overlay burned in, with the region boxes and a
"NOT FOR DIAGNOSIS" banner, for viewers that read neither SEG nor GSPS."""

from __future__ import annotations

import warnings

import cv2
import highdicom as hd
import numpy as np
import pydicom

from cxrxai.pacs.objects.common import MANUFACTURER, NOT_FOR_DIAGNOSIS, Series, finish, unit_map
from cxrxai.pacs.results import MapResult
from cxrxai.render import overlay


def overlay_capture(
    source: pydicom.Dataset, pixels: np.ndarray, m: MapResult, series: Series, number: int
) -> hd.sc.SCImage:
    """``pixels``: the source as cxrxai reads it ([0, 1], white = dense)."""
    picture = np.ascontiguousarray(overlay(pixels, unit_map(m.values)))
    thickness = max(2, picture.shape[1] // 400)
    for x0, y0, x1, y1 in m.boxes:
        cv2.rectangle(picture, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 255), thickness)
    scale = picture.shape[1] / 1400
    for row, text in enumerate((NOT_FOR_DIAGNOSIS, m.name)):
        cv2.putText(
            picture,
            text,
            (10, int((row + 1) * 40 * scale) + 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 0),
            max(1, thickness // 2),
            cv2.LINE_AA,
        )
    with warnings.catch_warnings():  # it warns of the source's odd names; they stay as sent
        warnings.simplefilter("ignore", UserWarning)
        sc = _capture(source, picture, series, number)
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = NOT_FOR_DIAGNOSIS
    referenced = pydicom.Dataset()
    referenced.ReferencedSOPClassUID = source.SOPClassUID
    referenced.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = [referenced]
    sc.DerivationDescription = f"cxrxai {m.name} overlay of the referenced image"[:1024]
    return finish(sc, source, series)


def _capture(
    source: pydicom.Dataset, picture: np.ndarray, series: Series, number: int
) -> hd.sc.SCImage:
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=picture,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=number,
        manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source),
    )


def _orientation(source: pydicom.Dataset) -> tuple[str, str] | None:
    value = source.get("PatientOrientation")
    return (str(value[0]), str(value[1])) if value is not None and len(value) == 2 else None
