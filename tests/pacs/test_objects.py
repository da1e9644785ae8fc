"""The DICOM objects cxrxai writes for one radiograph (the pydicom-data CR): each passes
dciodvfy with 0 errors, and each read back holds what went in."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from cxrxai.errors import CxrxaiError
from cxrxai.imageio import read_image
from cxrxai.pacs.objects import result_objects
from cxrxai.pacs.objects.common import prepared_source
from cxrxai.pacs.results import Algorithm, CaseResult, MapResult, TruthBox

ALGORITHM = Algorithm("effnet-lite0 covid", "format 1", "ab" * 32, "0.1.0")


def case_result(rows: int, columns: int) -> CaseResult:
    values = np.zeros((rows, columns), np.float32)
    values[500:900, 400:800] = 1.0
    values[1000:1100, 1200:1300] = 0.37
    values[0:10, 0:10] = -2.0  # a signed method's negative evidence: not in the SEG
    grad = MapResult(
        "gradcam",
        "COVID-19",
        values,
        {"layer": "blocks.6"},
        "top-percent 5",
        ((400, 500, 800, 900), (1200, 1000, 1300, 1100)),
        {"lung_relevance": 0.8125, "border_relevance": 0.0625, "iou": float("nan")},
    )
    lrp = MapResult("lrp", "COVID-19", values * 3.0, {}, "top-percent 5", (), {"dice": 0.5})
    truth = (TruthBox("COVID-19", "rad1", (390, 480, 820, 910)),)
    return CaseResult({"COVID-19": 0.75, "Normal": 0.25}, ("COVID-19",), (grad, lrp), truth)


@pytest.fixture(scope="module")
def written(rg1_files, tmp_path_factory):
    source = pydicom.dcmread(rg1_files["RG1_UNCR"])
    result = case_result(int(source.Rows), int(source.Columns))
    pixels = read_image(rg1_files["RG1_UNCR"]).pixels
    folder = tmp_path_factory.mktemp("objects")
    paths = {}
    for number, obj in enumerate(result_objects(source, result, ALGORITHM, pixels)):
        path = folder / f"{obj.Modality}-{number}.dcm"
        obj.save_as(path, enforce_file_format=True)
        paths[path.stem] = path
    return source, result, paths


def test_every_object_passes_dciodvfy(written, dciodvfy):
    _, _, paths = written
    assert sorted(p.split("-")[0] for p in paths) == ["OT", "OT", "PR", "SEG", "SR"]
    for name, path in paths.items():
        errors, warnings = dciodvfy(path)
        assert errors == [], f"{name}: {errors}"
        assert warnings == [], f"{name}: {warnings}"


def test_objects_reference_the_source_in_new_series_naming_the_algorithm(written):
    source, _, paths = written
    series = set()
    for path in paths.values():
        obj = pydicom.dcmread(path)
        assert obj.StudyInstanceUID == source.StudyInstanceUID
        assert obj.PatientID == source.PatientID  # identifiers stay in what goes back
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID
        series.add(obj.SeriesInstanceUID)
        assert source.SOPInstanceUID in str(obj)
    assert len(series) == 4  # SR, SEG, PR, the captures
    seg = pydicom.dcmread(paths["SEG-1"])
    parameters = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert parameters.AlgorithmName == "cxrxai gradcam"
    assert "ab" * 32 in parameters.AlgorithmParameters
    assert "gradcam.layer=blocks.6" in parameters.AlgorithmParameters


def test_seg_values_equal_the_maps_to_8_bit(written):
    _, result, paths = written
    seg = hd.seg.segread(paths["SEG-1"])
    assert seg.segmentation_type.value == "FRACTIONAL"
    labels = [seg.get_segment_description(n).SegmentLabel for n in seg.segment_numbers]
    assert labels == ["gradcam COVID-19", "lrp COVID-19"]
    stored = seg.pixel_array  # frames of 0..255, one per segment
    for frame, m in zip(stored, result.maps, strict=True):
        expected = np.clip(m.values, 0, None) / np.clip(m.values, 0, None).max()
        np.testing.assert_allclose(frame / 255.0, expected, atol=0.5 / 255 + 1e-7)


def test_sr_measurements_equal_the_results(written):
    _, _, paths = written
    sr = hd.sr.srread(paths["SR-0"])
    groups = sr.content.get_image_measurement_groups()
    by_id = {g.tracking_identifier: g for g in groups}
    probabilities = {m.name.meaning: m.value for m in by_id["classification"].get_measurements()}
    assert probabilities == {"Probability of COVID-19": 0.75, "Probability of Normal": 0.25}
    grad = {m.name.meaning: m.value for m in by_id["gradcam COVID-19"].get_measurements()}
    assert grad == {"border_relevance": 0.0625, "lung_relevance": 0.8125}  # NaN left out
    rois = {g.tracking_identifier: g for g in sr.content.get_planar_roi_measurement_groups()}
    assert set(rois) == {
        "gradcam COVID-19 region box 1",
        "gradcam COVID-19 region box 2",
        "truth box 1 COVID-19 (rad1)",
    }
    polyline = rois["gradcam COVID-19 region box 1"].roi.value
    np.testing.assert_array_equal(polyline[[0, 2]], [[400, 500], [800, 900]])


def test_gsps_boxes_equal_the_region_and_truth_boxes(written):
    _, _, paths = written
    pr = pydicom.dcmread(paths["PR-2"])
    drawn = {}
    for annotation in pr.GraphicAnnotationSequence:
        boxes = [
            tuple(np.asarray(o.GraphicData, float).reshape(-1, 2)[[0, 2]].ravel())
            for o in annotation.GraphicObjectSequence
        ]
        drawn[annotation.TextObjectSequence[0].UnformattedTextValue] = boxes
    assert drawn == {
        "gradcam COVID-19": [(400, 500, 800, 900), (1200, 1000, 1300, 1100)],
        "truth COVID-19 (rad1)": [(390, 480, 820, 910)],
    }
    assert pr.SoftcopyVOILUTSequence[0].WindowWidth > 0


def test_captures_are_labelled_not_for_diagnosis(written):
    _, _, paths = written
    for name in ("OT-3", "OT-4"):
        sc = pydicom.dcmread(paths[name])
        assert sc.BurnedInAnnotation == "YES" and "NOT FOR DIAGNOSIS" in sc.ImageComments
        assert "NOT FOR DIAGNOSIS" in sc.SeriesDescription
        assert sc.pixel_array.shape == (sc.Rows, sc.Columns, 3)


def test_the_source_is_fixed_in_one_place_and_maps_must_fit_it(rg1_files):
    source = pydicom.dcmread(rg1_files["RG1_UNCR"])
    assert [float(v) for v in source.PixelSpacing] == [0.0, 0.0]
    fixed = prepared_source(source)
    assert "PixelSpacing" not in fixed and "PixelSpacing" in source  # a copy is fixed
    small = CaseResult(
        {"COVID-19": 0.5}, (), (MapResult("gradcam", "COVID-19", np.ones((224, 224))),)
    )
    with pytest.raises(CxrxaiError, match="resample them to the source"):
        result_objects(source, small, ALGORITHM)


def test_parametric_maps_keep_float_values_and_say_they_are_research(rg1_files, tmp_path, dciodvfy):
    """The research option: one float Parametric Map per map, its values the map's own
    (signed, unquantised), its invented frame of reference said in its descriptions;
    dciodvfy finds no error. Accepted warning (docs/dicom.md): dicom3tools' dictionary
    does not know Image/Frame Type value 4 QUANTITY, which highdicom writes."""
    source = pydicom.dcmread(rg1_files["RG1_UNCR"])
    result = case_result(int(source.Rows), int(source.Columns))
    objects = result_objects(source, result, ALGORITHM, parametric_maps=True)
    maps = [o for o in objects if o.SOPClassUID.name == "Parametric Map Storage"]
    assert len(maps) == len(result.maps) == 2
    assert len({o.SeriesInstanceUID for o in maps}) == 1
    for number, (obj, m) in enumerate(zip(maps, result.maps, strict=True), start=1):
        path = tmp_path / f"pm-{number}.dcm"
        obj.save_as(path, enforce_file_format=True)
        errors, warnings = dciodvfy(path)
        assert errors == [], errors
        assert [w for w in warnings if "<QUANTITY>" not in w] == [], warnings
        back = pydicom.dcmread(path)
        assert back.StudyInstanceUID == source.StudyInstanceUID
        assert source.SOPInstanceUID in str(back)
        assert "RESEARCH" in back.ContentDescription and "RESEARCH" in back.SeriesDescription
        assert back.ManufacturerModelName == ALGORITHM.model_name
        values = back.pixel_array.astype(np.float32)
        np.testing.assert_array_equal(values, m.values)  # float32, not 1/255 steps
        assert values.min() == -2.0 * (3.0 if m.method == "lrp" else 1.0)  # the sign kept
    without = result_objects(source, result, ALGORITHM)
    assert not [o for o in without if o.SOPClassUID.name == "Parametric Map Storage"]
