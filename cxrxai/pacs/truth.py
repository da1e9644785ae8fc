"""A reading already on the PACS as a case's truth: the regions of a Segmentation
(BINARY, or FRACTIONAL cut at one half) and the planar ROIs of a TID 1500 SR that
reference the image become its annotations, their labels its labels.

cxrxai's own objects (Manufacturer "cxrxai") are never read as truth: a model's output
must not grade the model. Anything that cannot be read is left out with a warning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import highdicom as hd
import numpy as np
import pydicom

from cxrxai.cases import Annotation
from cxrxai.pacs.objects.common import MANUFACTURER

Warn = Callable[[str], None]
SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
}


def readings(objects: Iterable[pydicom.Dataset], warn: Warn) -> dict[str, list[Annotation]]:
    """SOP Instance UID of a referenced image -> the annotations ``objects`` (SEG and SR
    data sets of its study) give it."""
    found: dict[str, list[Annotation]] = defaultdict(list)
    for obj in objects:
        if str(obj.get("Manufacturer", "")) == MANUFACTURER:
            continue
        what = f"{obj.get('Modality', '?')} {obj.get('SOPInstanceUID', '?')}"
        try:
            if obj.Modality == "SEG":
                pairs = _segmentation(obj)
            elif obj.Modality == "SR":
                pairs = _report(obj)
            else:
                continue
        except Exception as exc:  # a reading in a form highdicom cannot read
            warn(f"{what} cannot be read as a reading ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        for sop, annotation in pairs:
            found[sop].append(annotation)
    return dict(found)


def _author(obj: pydicom.Dataset, *keywords: str) -> str:
    for keyword in keywords:
        value = obj.get(keyword)
        if value:
            return str(value)[:64]
    return f"{obj.Modality} series {obj.get('SeriesNumber', '?')}"


def _segmentation(obj: pydicom.Dataset) -> list[tuple[str, Annotation]]:
    seg = hd.seg.Segmentation.from_dataset(obj, copy=False)
    author = _author(obj, "ContentCreatorName", "SeriesDescription")
    sources = {
        str(item.ReferencedSOPInstanceUID)
        for series in obj.get("ReferencedSeriesSequence", [])
        for item in series.get("ReferencedInstanceSequence", [])
    }
    fractional = seg.segmentation_type.value == "FRACTIONAL"
    pairs = []
    for sop in sorted(sources):
        for number in seg.segment_numbers:
            description = seg.get_segment_description(number)
            label = str(description.SegmentedPropertyTypeCodeSequence[0].CodeMeaning)
            pixels = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[sop],
                segment_numbers=[number],
                ignore_spatial_locations=True,
            )[0, :, :, 0]
            if fractional:
                mask = pixels.astype(np.float32) / float(obj.MaximumFractionalValue) >= 0.5
            else:
                mask = pixels > 0
            if mask.any():
                pairs.append((sop, Annotation("mask", label, author, mask_loader=lambda m=mask: m)))
    return pairs


def _report(obj: pydicom.Dataset) -> list[tuple[str, Annotation]]:
    kind = SR_CLASSES.get(str(obj.SOPClassUID))
    if kind is None:
        raise ValueError(f"SR class {obj.SOPClassUID} holds no TID 1500 report highdicom reads")
    sr = kind.from_dataset(obj, copy=False)
    report = sr.content
    names = [
        str(item.PersonName)
        for item in obj.get("ContentSequence", [])
        if item.get("ValueType") == "PNAME" and item.get("PersonName")
    ]
    author = names[0][:64] if names else _author(obj, "SeriesDescription")
    pairs = []
    for group in report.get_planar_roi_measurement_groups():
        region = group.roi
        if region is None or group.finding_type is None:
            continue
        points = np.asarray(region.value, dtype=float).reshape(-1, 2)
        sop = str(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        label = str(group.finding_type.meaning)
        pairs.append(
            (
                sop,
                Annotation("box", label, author, box=(float(x0), float(y0), float(x1), float(y1))),
            )
        )
    return pairs
