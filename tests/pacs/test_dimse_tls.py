"""DIMSE over DICOM TLS against an Orthanc that speaks only TLS on its DICOM port and asks
for a client certificate: find, fetch and store with the private CA and cxrxai's
certificate; a clear error naming the setting for each thing missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxrxai.errors import PacsError
from cxrxai.imageio import read_image
from cxrxai.pacs.address import load_credentials, parse_address
from cxrxai.pacs.connect import open_source
from cxrxai.pacs.source import Query

STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"


@pytest.fixture(scope="module")
def stored(orthanc_tls, rg1_files) -> str:
    """The pydicom-data CR stored through the Orthanc's plain DICOMweb; its SOP UID."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    dataset = pydicom.dcmread(rg1_files["RG1_UNCR"])
    DICOMwebClient(orthanc_tls.dicomweb).store_instances([dataset])
    return str(dataset.SOPInstanceUID)


def _tls_url(orthanc) -> str:
    return f"dicoms://ORTHANC@127.0.0.1:{orthanc.dicom}"


def _credentials(tls_files, client: bool = True, ca: bool = True):
    env = {}
    if ca:
        env["CXRXAI_PACS_CA_BUNDLE"] = str(tls_files["ca.pem"])
    if client:
        env["CXRXAI_PACS_CLIENT_CERT"] = str(tls_files["cxrxai.pem"])
        env["CXRXAI_PACS_CLIENT_KEY"] = str(tls_files["cxrxai.key"])
    return load_credentials(environ=env)


def test_find_fetch_and_store_over_dicom_tls(orthanc_tls, tls_files, stored, rg1_files):
    source = open_source(parse_address(_tls_url(orthanc_tls)), _credentials(tls_files))
    (ref,) = [r for r in source.find(Query(study_uid=STUDY)) if r.sop_uid == stored]
    fetched = read_image(source.fetch(ref, 64 << 20), name="over TLS")
    np.testing.assert_array_equal(fetched.pixels, read_image(rg1_files["RG1_UNCR"]).pixels)
    import pydicom
    from highdicom import UID

    copy = pydicom.dcmread(rg1_files["RG1_UNCR"])
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = UID()
    copy.SeriesInstanceUID = UID()
    source.store([copy])  # C-STORE over TLS
    found = {r.sop_uid for r in source.find(Query(study_uid=STUDY))}
    assert {stored, str(copy.SOPInstanceUID)} <= found


def test_what_is_missing_is_named(orthanc_tls, tls_files, stored):
    address = parse_address(_tls_url(orthanc_tls))
    without_client = open_source(address, _credentials(tls_files, client=False), attempts=1)
    with pytest.raises(PacsError, match=r"asks for cxrxai's certificate: set \$CXRXAI_PACS_CLI"):
        without_client.find(Query(study_uid=STUDY))
    without_ca = open_source(address, _credentials(tls_files, ca=False), attempts=1)
    with pytest.raises(PacsError, match=r"certificate is not trusted .*CXRXAI_PACS_CA_BUNDLE"):
        without_ca.find(Query(study_uid=STUDY))
    plain = open_source(parse_address(orthanc_tls.dimse), attempts=1, timeout=5)
    with pytest.raises(PacsError, match="takes dicoms://"):
        plain.find(Query(study_uid=STUDY))


def test_client_certificates_from_a_file_and_in_pairs(tls_files, tmp_path):
    path = tmp_path / "pacs.json"
    path.write_text(
        json.dumps(
            {
                "ca": str(tls_files["ca.pem"]),
                "client_cert": str(tls_files["cxrxai.pem"]),
                "client_key": str(tls_files["cxrxai.key"]),
            }
        )
    )
    credentials = load_credentials(path, environ={})
    assert credentials.client_cert == tls_files["cxrxai.pem"]
    assert "cxrxai.key" not in repr(credentials)
    with pytest.raises(PacsError, match="needs its key"):
        load_credentials(environ={"CXRXAI_PACS_CLIENT_CERT": str(tls_files["cxrxai.pem"])})
    broken = {"CXRXAI_PACS_CA_BUNDLE": str(tmp_path / "none.pem")}
    with pytest.raises(PacsError, match="cannot be read"):
        open_source(
            parse_address("dicoms://PACS@127.0.0.1:11112"), load_credentials(environ=broken)
        )
    assert parse_address("dicoms://PACS@127.0.0.1:11112").tls
    assert not parse_address("dicom://PACS@127.0.0.1:11112").tls
