"""PACS addresses and credentials: secrets never in an address, a repr or a message."""

from __future__ import annotations

import json

import pytest

from cxrxai.errors import PacsError
from cxrxai.pacs.address import load_credentials, parse_address, redact


def test_dicomweb_and_dimse_addresses():
    web = parse_address("https://pacs.example.org:8443/dicom-web/")
    assert (web.kind, web.url, web.host, web.port) == (
        "dicomweb",
        "https://pacs.example.org:8443/dicom-web",
        "pacs.example.org",
        8443,
    )
    dimse = parse_address("dicom://ORTHANC@10.0.0.5:4242", calling_aet="READER1")
    assert (dimse.kind, dimse.host, dimse.port, dimse.called_aet, dimse.calling_aet) == (
        "dimse",
        "10.0.0.5",
        4242,
        "ORTHANC",
        "READER1",
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("https://bob:hunter2@pacs/dicom-web", "holds credentials"),
        ("https://bob@pacs/dicom-web", "holds credentials"),
        ("ftp://pacs/x", "neither DICOMweb"),
        ("dicom://ORTHANC@pacs", "neither DICOMweb"),
        ("dicom://A-VERY-LONG-AE-TITLE-X@pacs:104", "1-16 characters"),
        ("http://pacs:99999999/x", "malformed"),
    ],
)
def test_bad_addresses_are_refused_without_echoing_secrets(text, match):
    with pytest.raises(PacsError, match=match) as raised:
        parse_address(text)
    assert "hunter2" not in str(raised.value)


def test_credentials_from_environment_or_file(tmp_path):
    env = {
        "CXRXAI_PACS_USER": "u",
        "CXRXAI_PACS_PASSWORD": "pw-123",
        "CXRXAI_PACS_CA_BUNDLE": "/ca",
    }
    creds = load_credentials(environ=env)
    assert (creds.user, creds.password, str(creds.ca_bundle)) == ("u", "pw-123", "/ca")
    assert "pw-123" not in repr(creds) and "basic auth" in repr(creds)
    assert redact("failed with pw-123 in it", creds) == "failed with *** in it"
    token = tmp_path / "token.json"
    token.write_text(json.dumps({"token": "abc.def"}))
    from_file = load_credentials(token, environ=env)
    assert (from_file.token, from_file.user) == ("abc.def", None)
    assert "abc.def" not in repr(from_file)


@pytest.mark.parametrize(
    ("content", "match"),
    [("not json", "cannot be read as JSON"), ('{"user": 3}', "string values"), ("[1]", "object")],
)
def test_bad_credentials_files_are_named(tmp_path, content, match):
    path = tmp_path / "creds.json"
    path.write_text(content)
    with pytest.raises(PacsError, match=match):
        load_credentials(path, environ={})


def test_a_password_without_a_user_is_refused():
    with pytest.raises(PacsError, match="without a user"):
        load_credentials(environ={"CXRXAI_PACS_PASSWORD": "x"})
