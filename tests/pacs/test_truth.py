"""A radiologist's reading on the PACS (a BINARY SEG and a TID 1500 SR from another
manufacturer) as the truth of its image; a reader study made from PACS cases."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from cxrxai.pacs.address import parse_address
from cxrxai.pacs.cache import InstanceCache
from cxrxai.pacs.cases import cached_cases, pacs_cases
from cxrxai.pacs.connect import open_source
from cxrxai.pacs.source import Query

STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
BOX = (300.0, 400.0, 900.0, 1200.0)
LABEL = "COVID-19"


def _reading_seg(source: pydicom.Dataset) -> pydicom.Dataset:
    fixed = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_bytes(source)))
    del fixed.PixelSpacing  # pydicom-data's 0\0 (a reading tool would fix it too)
    mask = np.zeros((1, fixed.Rows, fixed.Columns, 1), np.uint8)
    mask[0, 400:1200, 300:900, 0] = 1
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="opacity",
        segmented_property_category=codes.SCT.Finding,
        segmented_property_type=hd.sr.CodedConcept("840539006", "SCT", LABEL),
        algorithm_type="MANUAL",
    )
    seg = hd.seg.Segmentation(
        [fixed], mask, "BINARY", [segment], hd.UID(), 50, hd.UID(), 1,
        "Hospital PACS tools", "Reader", "1.0", "1", content_creator_name="Reader^Alice",
    )  # fmt: skip
    seg.PatientOrientation = fixed.PatientOrientation
    return seg


def _reading_sr(source: pydicom.Dataset) -> pydicom.Dataset:
    from highdicom.sr import (
        GraphicTypeValues,
        ImageRegion,
        MeasurementReport,
        ObservationContext,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )

    x0, y0, x1, y1 = BOX
    region = ImageRegion(
        graphic_type=GraphicTypeValues.POLYLINE,
        graphic_data=np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]),
        source_image=SourceImageForRegion.from_source_image(source),
    )
    roi = PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="lesion 1"),
        referenced_region=region,
        finding_type=hd.sr.CodedConcept("840539006", "SCT", LABEL),
    )
    person = ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=PersonObserverIdentifyingAttributes(name="Reader^Bob"),
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_person_context=person),
        procedure_reported=hd.sr.CodedConcept("399208008", "SCT", "Chest X-ray"),
        imaging_measurements=[roi],
    )
    return hd.sr.Comprehensive3DSR(
        [source], report, hd.UID(), 51, hd.UID(), 1, manufacturer="Hospital PACS tools"
    )


def _bytes(ds: pydicom.Dataset) -> bytes:
    buffer = pydicom.filebase.DicomBytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def read_study(orthanc, stored_rg1, rg1_files):
    source = pydicom.dcmread(rg1_files["RG1_UNCR"])
    pacs = open_source(parse_address(orthanc.dicomweb))
    pacs.store([_reading_seg(source), _reading_sr(source)])
    return pacs


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_a_reading_on_the_pacs_is_the_case_s_truth(read_study, orthanc, stored_rg1, tmp_path, kind):
    url = orthanc.dicomweb if kind == "dicomweb" else orthanc.dimse
    cache = InstanceCache(tmp_path)
    cases = {c.case_id: c for c in pacs_cases(open_source(parse_address(url)), Query(STUDY), cache)}
    read = cases[stored_rg1["RG1_UNCR"]]
    assert read.labels == [LABEL] and cases[stored_rg1["RG1_J2KR"]].labels == []
    by_kind = {a.kind: a for a in read.annotations}
    assert by_kind["box"].box == BOX and by_kind["box"].author == "Reader^Bob"
    mask = by_kind["mask"].load_mask()
    assert by_kind["mask"].author == "Reader^Alice" and mask.sum() == 800 * 600
    assert mask[400:1200, 300:900].all()
    # cxrxai's own objects on the study (earlier tests sent some) are not truth
    assert len(read.annotations) == 2
    offline = {c.case_id: c for c in cached_cases(STUDY, cache)}
    assert sorted(a.kind for a in offline[read.case_id].annotations) == ["box", "mask"]


def test_a_reader_study_made_from_pacs_cases_end_to_end(
    read_study, orthanc, stored_rg1, tmp_path, monkeypatch, capsys
):
    from cxrxai.cli import main
    from cxrxai.study import service
    from cxrxai.study.db import connect

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXRXAI_ADMIN_PASSWORD", "admin password")
    db_path = tmp_path / "study.sqlite"
    service.set_admin_password(connect(db_path), "admin password")
    create = ["study", "create", "--db", str(db_path), "--dataset", "pacs"]
    create += ["--url", orthanc.dicomweb, "--study", STUDY, "--methods", "gradcam"]
    assert main(create) == 0
    assert "created with 1 cases" in capsys.readouterr().out  # the read image only
    db = connect(db_path)
    study = next(db["studies"].rows)
    (case,) = db["study_cases"].rows
    assert (case["case_id"], case["dataset"], case["split"]) == (
        stored_rg1["RG1_UNCR"], "pacs", STUDY,
    )  # fmt: skip
    assert json.loads(study["methods"]) == ["gradcam"]
    # the maps are prepared from the cached instance, offline (no --url)
    assert main(["study", "prepare", "--code", study["code"], "--db", str(db_path)]) == 0
    assert "1 of 1 ready" in capsys.readouterr().out
    rater = service.join(db, study["code"], "R1")
    task = service.next_assignment(db, rater)
    scores = {label: {s: 4 for s in service.SCORES} for label in task.shown_as}
    mark = (320.0, 410.0, 880.0, 1190.0)
    service.submit(db, rater, task.id, scores, True, marks=service.Marks([mark]))
    assert main(["study", "analyse", "--code", study["code"], "--db", str(db_path)]) == 0
    assert "1 ratings" in capsys.readouterr().out
    # the readers' marks go back to the PACS as an SR and a GSPS on the image's study
    export = ["study", "export", "--code", study["code"], "--db", str(db_path)]
    export += ["--out", str(tmp_path / "export"), "--to-pacs", orthanc.dimse]
    assert main(export) == 0
    assert "sent 2 DICOM objects of readers' marks on 1 case(s)" in capsys.readouterr().out
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb)
    reports = [
        ds
        for series in client.search_for_series(STUDY, search_filters={"Modality": "SR"})
        for ds in client.retrieve_series(STUDY, series["0020000E"]["Value"][0])
        if ds.Manufacturer == "cxrxai" and _mentions(ds, "reader study")
    ]
    assert reports
    sr = hd.sr.Comprehensive3DSR.from_dataset(reports[-1])
    (roi,) = sr.content.get_planar_roi_measurement_groups()
    assert roi.tracking_identifier == f"truth box 1 {LABEL} (R01)"
    points = np.asarray(roi.roi.value).reshape(-1, 2)
    assert (*points.min(axis=0), *points.max(axis=0)) == mark


def test_evaluate_from_the_pacs_sends_the_results_rows_back(
    read_study, orthanc, stored_rg1, tmp_path, monkeypatch, capsys
):
    """The SR's numbers of each map equal the case's results rows at the region setting
    sent (top-percent 10): one computation fills both."""
    from dicomweb_client.api import DICOMwebClient

    from cxrxai.cli import main
    from cxrxai.evaluation.store import LOCALISATION, open_results

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    db_path = tmp_path / "results.sqlite"
    args = ["evaluate", "--dataset", "pacs", "--url", orthanc.dimse, "--study", STUDY]
    args += ["--methods", "gradcam", "--no-lung-model", "--db", str(db_path)]
    args += ["--to-pacs", orthanc.dicomweb]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 case x method units computed" in out and "sent 3 DICOM objects to" in out
    row = next(
        open_results(db_path)[LOCALISATION].rows_where(
            "mode = 'top-percent' and value = 10 and case_id = ?", [stored_rg1["RG1_UNCR"]]
        )
    )
    client = DICOMwebClient(orthanc.dicomweb)
    reports = [
        hd.sr.Comprehensive3DSR.from_dataset(ds)
        for series in client.search_for_series(STUDY, search_filters={"Modality": "SR"})
        for ds in client.retrieve_series(STUDY, series["0020000E"]["Value"][0])
        if ds.Manufacturer == "cxrxai" and ds.ContentDate and "gradcam COVID-19" in str(ds)
    ]
    assert reports, "no SR of the evaluation on the PACS"
    groups = {g.tracking_identifier: g for g in reports[-1].content.get_image_measurement_groups()}
    sent = {m.name.meaning: m.value for m in groups["gradcam COVID-19"].get_measurements()}
    stored = {k: v for k, v in row.items() if k in sent}
    assert stored and sent.keys() <= {*row.keys()}
    for name, value in sent.items():
        assert value == pytest.approx(row[name], rel=1e-9, abs=1e-12), name
    assert {"iou", "dice", "hit", "lung_relevance"} & set(sent) >= {"iou", "dice"}


def _mentions(ds: pydicom.Dataset, text: str) -> bool:
    """Whether any text value in ``ds`` (its content tree included) holds ``text``."""
    return any(text in str(e.value) for e in ds.iterall() if e.VR not in ("SQ", "OB", "OW"))
