"""The root result: a TID 1500 Measurement Report (Comprehensive 3D SR) holding the
model's probabilities and predicted labels, per map its measurements (lung share,
border share, the region's metrics), one planar ROI per region box and truth box."""

from __future__ import annotations

import math

import highdicom as hd
import pydicom
from highdicom.sr import (
    AlgorithmIdentification,
    DeviceObserverIdentifyingAttributes,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TrackingIdentifier,
)
from pydicom.sr.codedict import codes

from cxrxai.pacs.objects.common import (
    CHEST_XRAY,
    FINDING,
    MANUFACTURER,
    NO_UNITS,
    Series,
    finish,
    local,
    rectangle,
)
from cxrxai.pacs.results import Algorithm, CaseResult

PROBABILITY = "probability"
PREDICTED = local("predicted", "Predicted finding")
REGION_BOX, TRUTH_BOX = "region box", "truth box"


def measurement_report(
    source: pydicom.Dataset, result: CaseResult, algorithm: Algorithm, series: Series
) -> hd.sr.Comprehensive3DSR:
    """Measurements that are not numbers (NaN: undefined for this case) are left out;
    the image library is left out too (highdicom's needs ImagerPixelSpacing, which CR
    often lacks) - every group names its source image instead."""
    model = AlgorithmIdentification(name=algorithm.model_name[:64], version=algorithm.version[:64])
    groups: list = []
    if result.probabilities:
        groups.append(_classification(source, result, model))
    for m in result.maps:
        method = AlgorithmIdentification(
            name=f"cxrxai {m.method}"[:64],
            version=algorithm.version[:64],
            parameters=[f"{k}={v}"[:64] for k, v in sorted(m.settings.items())] or None,
        )
        values = [
            Measurement(name=local(name), value=float(v), unit=NO_UNITS, algorithm_id=method)
            for name, v in sorted(m.measurements.items())
            if v is not None and math.isfinite(v)
        ]
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=m.name[:64]),
                finding_type=local(m.label),
                algorithm_id=method,
                measurements=values or None,
                source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
            )
        )
        for number, box in enumerate(m.boxes, start=1):
            groups.append(_roi(source, f"{m.name} {REGION_BOX} {number}", m.label, box, method))
    for number, truth in enumerate(result.truth, start=1):
        who = f" ({truth.author})" if truth.author else ""
        groups.append(
            _roi(source, f"{TRUTH_BOX} {number} {truth.label}{who}", truth.label, truth.box, None)
        )
    device = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.model_name[:64],
            serial_number=algorithm.weights_sha256[:16],
        ),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=device),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_instance_uid=series.uid,
        series_number=series.number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
    )
    return finish(sr, source, series)


def _roi(
    source: pydicom.Dataset,
    identifier: str,
    label: str,
    box: tuple[float, float, float, float],
    method: AlgorithmIdentification | None,
) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    region = ImageRegion(
        graphic_type=GraphicTypeValues.POLYLINE,
        graphic_data=rectangle(box),
        source_image=SourceImageForRegion.from_source_image(source),
    )
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=identifier[:64]),
        referenced_region=region,
        finding_type=local(label),
        finding_category=FINDING,
        algorithm_id=method,
    )


def _classification(
    source: pydicom.Dataset, result: CaseResult, model: AlgorithmIdentification
) -> MeasurementsAndQualitativeEvaluations:
    """The model's probability of every label and its predicted labels."""
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="classification"),
        algorithm_id=model,
        measurements=[
            Measurement(
                name=local(f"p:{label}", f"Probability of {label}"),
                value=float(p),
                unit=NO_UNITS,
                algorithm_id=model,
            )
            for label, p in result.probabilities.items()
            if math.isfinite(p)
        ],
        qualitative_evaluations=[
            QualitativeEvaluation(name=PREDICTED, value=local(label)) for label in result.predicted
        ]
        or None,
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
    )
