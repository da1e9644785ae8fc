"""Pull radiographs from a running Orthanc by DICOMweb (QIDO-RS/WADO-RS) and by DIMSE
(C-FIND/C-GET): the same pixels as reading the file."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pydicom
import pytest

from cxrxai.errors import CxrxaiError, PacsError
from cxrxai.imageio import read_image
from cxrxai.pacs.address import load_credentials, parse_address
from cxrxai.pacs.cache import InstanceCache
from cxrxai.pacs.cases import pacs_cases
from cxrxai.pacs.connect import open_source
from cxrxai.pacs.source import InstanceRef, Query

STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"


@pytest.fixture(params=["dicomweb", "dimse"])
def source(request, orthanc, stored_rg1):
    url = orthanc.dicomweb if request.param == "dicomweb" else orthanc.dimse
    opened = open_source(parse_address(url))
    yield opened
    opened.close()


def test_find_by_study_accession_and_modality(source, stored_rg1):
    by_study = source.find(Query(study_uid=STUDY))
    assert {ref.sop_uid for ref in by_study} >= set(stored_rg1.values())
    by_accession = source.find(Query(accession="exam Number"))
    assert {ref.sop_uid for ref in by_accession} == {ref.sop_uid for ref in by_study}
    by_modality = source.find(Query(modalities=("CR",)))
    assert set(stored_rg1.values()) <= {ref.sop_uid for ref in by_modality}
    assert source.find(Query(modalities=("MR",))) == []
    ref = next(r for r in by_study if r.sop_uid == stored_rg1["RG1_UNCR"])
    assert (ref.modality, ref.rows, ref.columns, ref.frames) == ("CR", 1955, 1841, 1)


@pytest.mark.parametrize("name", ["RG1_UNCR", "RG1_J2KR"])
def test_fetched_pixels_equal_the_file(source, stored_rg1, rg1_files, name):
    (ref,) = [r for r in source.find(Query(study_uid=STUDY)) if r.sop_uid == stored_rg1[name]]
    fetched = read_image(source.fetch(ref, 64 << 20), name="fetched")
    on_disk = read_image(rg1_files[name])
    np.testing.assert_array_equal(fetched.pixels, on_disk.pixels)
    # the stored transfer syntax is kept (JPEG 2000 stays compressed)
    assert fetched.meta.transfer_syntax == on_disk.meta.transfer_syntax


def test_fetch_refuses_more_bytes_than_allowed(source, stored_rg1):
    (ref,) = [r for r in source.find(Query(study_uid=STUDY)) if r.sop_uid == stored_rg1["RG1_UNCR"]]
    with pytest.raises(PacsError, match=r"largest accepted is 1 MB"):
        source.fetch(ref, 1 << 20)


def test_cases_are_cached_privately_and_fetched_once(source, tmp_path, stored_rg1, rg1_files):
    cache = InstanceCache(tmp_path / "cache")
    cases = pacs_cases(source, Query(study_uid=STUDY), cache)
    assert {c.case_id for c in cases} == set(stored_rg1.values())
    assert all(c.dataset == "pacs" and c.split == STUDY for c in cases)
    first = next(c for c in cases if c.case_id == stored_rg1["RG1_UNCR"])
    np.testing.assert_array_equal(
        first.load_image().pixels, read_image(rg1_files["RG1_UNCR"]).pixels
    )
    assert stat.S_IMODE(first.image_path.stat().st_mode) == 0o600
    fetched = []
    original = source.fetch
    source.fetch = lambda ref, limit: fetched.append(ref) or original(ref, limit)
    again = pacs_cases(source, Query(study_uid=STUDY), cache)
    assert [c.image_path for c in again] == [c.image_path for c in cases] and fetched == []


def test_the_cache_keeps_to_its_limit_but_never_drops_a_runs_cases(source, tmp_path, stored_rg1):
    """Over $CXRXAI_PACS_CACHE_MB the instances used longest ago go after a fetch - never
    those the run itself fetched or read."""
    refs = {r.sop_uid: r for r in source.find(Query(study_uid=STUDY))}
    uncr, j2kr = refs[stored_rg1["RG1_UNCR"]], refs[stored_rg1["RG1_J2KR"]]
    run = InstanceCache(tmp_path, limit_bytes=1)  # a run's cases alone exceed the limit
    first, second = run.get(source, uncr), run.get(source, j2kr)
    assert first.is_file() and second.is_file()
    both = first.stat().st_size + second.stat().st_size
    assert run.usage() == (2, both)
    later = InstanceCache(tmp_path, limit_bytes=second.stat().st_size + 1)
    assert later.get(source, uncr) == first  # read from the cache: now the last used
    second.unlink()  # gone (say, cleared by hand): fetched again, then the cache is cut
    assert later.get(source, j2kr) == second and first.is_file()  # both in use: both kept
    next_run = InstanceCache(tmp_path, limit_bytes=second.stat().st_size + 1)
    os.utime(first, (1, 1))  # used long ago
    second.unlink()
    next_run.get(source, j2kr)
    assert not first.exists() and second.is_file()  # the oldest, not in use, went
    assert next_run.usage() == (1, second.stat().st_size)
    assert next_run.clear() == 1 and next_run.usage() == (0, 0)
    assert list(tmp_path.iterdir()) == []  # the study's folder too


def test_pacs_cache_command_reports_and_clears(tmp_path, monkeypatch, capsys):
    from cxrxai.cli import main

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path))
    study = tmp_path / "pacs" / "1.2.3"
    study.mkdir(parents=True)
    (study / "1.2.3.4.dcm").write_bytes(b"x" * (3 << 20))
    monkeypatch.setenv("CXRXAI_PACS_CACHE_MB", "100")
    assert main(["pacs-cache"]) == 0
    assert "1 instance(s), 3.0 MB in" in capsys.readouterr().out
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.dcm").write_bytes(b"y")
    (tmp_path / "pacs" / "linked").symlink_to(outside)  # planted links out of the cache
    (tmp_path / "pacs" / "9.9").mkdir()
    (tmp_path / "pacs" / "9.9" / "link.dcm").symlink_to(outside / "keep.dcm")
    assert main(["pacs-cache", "--clear"]) == 0
    assert "1 instance(s) removed" in capsys.readouterr().out and not study.exists()
    assert (outside / "keep.dcm").is_file()  # never followed
    monkeypatch.setenv("CXRXAI_PACS_CACHE_MB", "0")
    assert main(["pacs-cache"]) == 2
    assert "CXRXAI_PACS_CACHE_MB must be a whole number of megabytes" in capsys.readouterr().err


def test_other_modalities_and_multiframe_are_left_out_by_name(orthanc, stored_rg1, tmp_path):
    from dicomweb_client.api import DICOMwebClient

    ct = _instance(STUDY, "CT", "1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.10.1.1")
    dx = _instance(STUDY, "DX", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.826.0.1.3680043.10.1.2")
    dx.NumberOfFrames, dx.PixelData = 2, bytes(2 * 8 * 8 * 2)
    DICOMwebClient(orthanc.dicomweb).store_instances([ct, dx])
    warnings: list[str] = []
    source = open_source(parse_address(orthanc.dicomweb))
    cases = pacs_cases(source, Query(study_uid=STUDY), InstanceCache(tmp_path), warnings.append)
    assert {c.case_id for c in cases} == set(stored_rg1.values())
    assert any("is CT: not a chest radiograph" in w for w in warnings)
    assert any("multi-frame instance (2 frames)" in w for w in warnings)
    with pytest.raises(CxrxaiError, match="holds no readable MR"):
        pacs_cases(source, Query(modalities=("MR",)), InstanceCache(tmp_path))
    warnings.clear()
    with pytest.raises(CxrxaiError, match="holds no readable DX"):
        pacs_cases(
            source, Query(STUDY, modalities=("DX",)), InstanceCache(tmp_path), warnings.append
        )
    assert any("is CR: not among the modalities asked (DX)" in w for w in warnings)


def test_a_huge_declared_image_is_refused_before_it_is_fetched(tmp_path):
    class Never:
        address = parse_address("http://127.0.0.1:9/dicom-web")

        def fetch(self, ref, limit):  # pragma: no cover - must not be reached
            raise AssertionError("fetched")

    huge = InstanceRef(STUDY, "1.2", "1.3", "1.2.840.10008.5.1.4.1.1.1", "CR", 30000, 30000)
    with pytest.raises(CxrxaiError, match="30000 x 30000"):
        InstanceCache(tmp_path).get(Never(), huge)


def test_a_pacs_that_is_down_is_named_quickly():
    for url in ("http://127.0.0.1:9/dicom-web", "dicom://ORTHANC@127.0.0.1:9"):
        source = open_source(parse_address(url), timeout=2, attempts=2)
        started = time.monotonic()
        with pytest.raises(PacsError, match="cannot be reached") as raised:
            source.find(Query(study_uid=STUDY))
        assert url in str(raised.value)
        assert time.monotonic() - started < 20


def test_basic_auth_from_the_environment_and_no_secret_shown(orthanc_with_auth, rg1_files):
    address = parse_address(orthanc_with_auth.dicomweb)
    wrong = load_credentials(
        environ={"CXRXAI_PACS_USER": "reader", "CXRXAI_PACS_PASSWORD": "wrong-pw-77"}
    )
    with pytest.raises(PacsError, match=r"HTTP 401.*check the credentials") as raised:
        open_source(address, wrong).find(Query(study_uid=STUDY))
    assert "wrong-pw-77" not in str(raised.value)
    right = load_credentials(
        environ={"CXRXAI_PACS_USER": "reader", "CXRXAI_PACS_PASSWORD": "s3cret-pw"}
    )
    assert "s3cret" not in repr(right)
    source = open_source(address, right)
    source.store([pydicom.dcmread(rg1_files["RG1_UNCR"])])
    assert len(source.find(Query(study_uid=STUDY))) == 1


def _instance(study: str, modality: str, sop_class: str, sop_uid: str) -> pydicom.Dataset:
    """A small synthetic instance on ``study`` (8 x 8, 16 bit)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, sop_uid, modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, sop_uid + ".9"
    ds.PatientID, ds.PatientName = "9RG1", "CompressedSamples^RG1"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(8 * 8 * 2)
    return ds
