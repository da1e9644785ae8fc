"""The command line against a running Orthanc: find, explain from the PACS and send the
results back, then read every object back from the PACS."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cxrxai.cli import main

STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
IDENTIFIERS = ("CompressedSamples", "9RG1", "19400305")  # patient name, ID, birth date


def test_pacs_find_lists_uids_and_sizes_but_no_identifier(orthanc, stored_rg1, capsys):
    assert main(["pacs-find", "--url", orthanc.dicomweb, "--study", STUDY]) == 0
    out = capsys.readouterr().out
    assert all(uid in out for uid in stored_rg1.values()) and "1841x1955" in out
    assert not any(text in out for text in IDENTIFIERS)


@pytest.fixture(scope="module")
def sent(orthanc, stored_rg1, tmp_path_factory, rg1_files):
    """explain --dataset pacs (DICOMweb) ... --to-pacs (DIMSE) --overlays --parametric-maps:
    the objects on the PACS."""
    from dicomweb_client.api import DICOMwebClient

    out = tmp_path_factory.mktemp("explained")
    os.environ["CXRXAI_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        code = main(
            [
                "explain",
                "--dataset",
                "pacs",
                "--url",
                orthanc.dicomweb,
                "--study",
                STUDY,
                "--modality",
                "CR",
                "--methods",
                "gradcam",
                "--no-lung-model",
                "--no-cache",
                "--out",
                str(out),
                "--to-pacs",
                orthanc.dimse,
                "--overlays",
                "--parametric-maps",
            ]
        )
    finally:
        del os.environ["CXRXAI_CACHE"]
    assert code == 0
    client = DICOMwebClient(orthanc.dicomweb)
    objects = {}
    for modality in ("SR", "SEG", "PR", "OT"):
        for series in client.search_for_series(STUDY, search_filters={"Modality": modality}):
            uid = series["0020000E"]["Value"][0]
            objects.setdefault(modality, []).extend(client.retrieve_series(STUDY, uid))
    return out, objects


def test_explain_from_the_pacs_sends_each_object_back(sent, stored_rg1, tmp_path, dciodvfy):
    _, objects = sent
    # two images: each an SR, a SEG, a GSPS, a capture and a Parametric Map (both "OT")
    assert {m: len(v) for m, v in objects.items()} == {"SR": 2, "SEG": 2, "PR": 2, "OT": 4}
    for modality, found in objects.items():
        for number, obj in enumerate(found):
            path = tmp_path / f"{modality}-{number}.dcm"
            obj.save_as(path, enforce_file_format=True)
            errors, warnings = dciodvfy(path)
            if obj.SOPClassUID.name == "Parametric Map Storage":  # accepted (docs/dicom.md)
                warnings = [w for w in warnings if "<QUANTITY>" not in w]
            assert errors == [] and warnings == [], (modality, errors, warnings)
    classes = {str(o.SOPClassUID.name) for found in objects.values() for o in found}
    assert classes == {
        "Comprehensive 3D SR Storage",
        "Segmentation Storage",
        "Grayscale Softcopy Presentation State Storage",
        "Secondary Capture Image Storage",
        "Parametric Map Storage",
    }


def test_what_came_back_equals_what_was_computed(sent, stored_rg1, rg1_files):
    import highdicom as hd
    import torch

    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.imageio import read_image
    from cxrxai.metrics.regions import region, region_boxes

    out, objects = sent
    sop = stored_rg1["RG1_UNCR"]
    (npz,) = out.glob(f"{sop}_gradcam_*.npz")  # the predicted label's map
    values = np.load(npz)["values"]
    seg = next(
        hd.seg.Segmentation.from_dataset(o)
        for o in objects["SEG"]
        if o.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        == sop
    )
    expected = np.clip(values, 0, None) / np.clip(values, 0, None).max()
    np.testing.assert_allclose(seg.pixel_array / 255.0, expected, atol=0.5 / 255 + 1e-6)
    sr = next(
        hd.sr.Comprehensive3DSR.from_dataset(o)
        for o in objects["SR"]
        if sop in str(o.CurrentRequestedProcedureEvidenceSequence)
    )
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    probs = {m.name.meaning: m.value for m in groups["classification"].get_measurements()}
    bundle = load_checkpoint(DEMO_CHECKPOINT, "cpu")
    pixels = read_image(rg1_files["RG1_UNCR"]).pixels
    for label, p in zip(bundle.labels, bundle.predict_proba(pixels)[0], strict=True):
        assert probs[f"Probability of {label}"] == pytest.approx(float(p), abs=1e-6)
    boxes = region_boxes(region(torch.from_numpy(values), "top-percent", 10.0))
    pr = next(o for o in objects["PR"] if sop in str(o.ReferencedSeriesSequence))
    drawn = [
        tuple(np.asarray(g.GraphicData, float).reshape(-1, 2)[[0, 2]].ravel())
        for a in pr.GraphicAnnotationSequence
        for g in a.GraphicObjectSequence
    ]
    assert sorted(drawn) == sorted(tuple(float(c) for c in b) for b in boxes)


@pytest.mark.parametrize("command", ["explain", "predict", "evaluate"])
def test_a_pacs_that_is_down_stops_the_command_before_any_work(command, tmp_path, capsys):
    args = [command, "--dataset", "pacs", "--url", "http://127.0.0.1:9/dicom-web"]
    args += ["--study", STUDY, "--pacs-timeout", "2"]
    if command == "explain":
        args += ["--out", str(tmp_path / "maps")]
    if command == "evaluate":
        args += ["--db", str(tmp_path / "results.sqlite")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9/dicom-web cannot be reached" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no maps, no database


def test_what_goes_with_to_pacs_needs_it(tmp_path, capsys):
    for extra in ("--overlays", "--parametric-maps"):
        args = ["explain", "--dataset", "pacs", "--url", "http://127.0.0.1:9/dicom-web"]
        assert main([*args, "--study", STUDY, "--out", str(tmp_path), extra]) == 2
        assert f"{extra} goes with --to-pacs URL" in capsys.readouterr().err


def test_credentials_in_an_address_are_refused(capsys):
    assert main(["pacs-find", "--url", "http://u:secret@127.0.0.1:9/x", "--study", STUDY]) == 2
    err = capsys.readouterr().err
    assert "holds credentials" in err and "secret" not in err


def test_a_radiograph_that_is_no_chest_gets_the_out_of_distribution_warning(
    own_orthanc, rg1_files, tmp_path, monkeypatch, capsys
):
    """pydicom-data's hand radiograph (CR, body part EXTREMITY) passes the modality filter,
    so only the out-of-distribution check can tell it is no chest: predict from the PACS
    warns about it by its UID, and not about the chest CR of the other study. An Orthanc
    of its own: the hand shares the chest's accession number, which other tests search."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    from pydicom.data import get_testdata_file

    hand = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    assert hand.Modality == "CR" and hand.BodyPartExamined == "EXTREMITY"
    chest = pydicom.dcmread(rg1_files["RG1_UNCR"])
    DICOMwebClient(own_orthanc.dicomweb).store_instances([hand, chest])
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    for study, flagged in ((str(hand.StudyInstanceUID), True), (STUDY, False)):
        args = ["predict", "--dataset", "pacs", "--url", own_orthanc.dicomweb, "--study", study]
        assert main(args) == 0
        err = capsys.readouterr().err
        warned = [line for line in err.splitlines() if line.startswith("warning:")]
        if flagged:
            assert len(warned) == 1 and str(hand.SOPInstanceUID) in warned[0], err
            assert "may not be a frontal chest radiograph" in warned[0]
        else:
            assert warned == [], err
