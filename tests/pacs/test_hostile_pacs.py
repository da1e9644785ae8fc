"""A hostile or broken DICOMweb service: every malformed answer is one clear PacsError
naming the PACS, never a traceback, never a file in the cache."""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest
from hostile_files import HOSTILE
from pydicom.data import get_testdata_file

from cxrxai.errors import CxrxaiError, PacsError
from cxrxai.pacs.address import parse_address
from cxrxai.pacs.cache import InstanceCache
from cxrxai.pacs.connect import open_source
from cxrxai.pacs.source import InstanceRef, Query

STUDY, SERIES, SOP, CR = "1.2.3", "1.2.3.4", "1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.1"


def _record(**overrides: object) -> dict:
    values = {
        "0020000D": ["UI", STUDY],
        "0020000E": ["UI", SERIES],
        "00080018": ["UI", SOP],
        "00080016": ["UI", CR],
        "00080060": ["CS", "CR"],
        "00280010": ["US", 64],
        "00280011": ["US", 64],
        **overrides,
    }
    return {tag: {"vr": vr, "Value": [value]} for tag, (vr, value) in values.items()}


class _Answer(BaseHTTPRequestHandler):
    answer: tuple[int, dict[str, str], bytes] = (200, {}, b"[]")

    def do_GET(self) -> None:
        status, headers, body = type(self).answer
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[type[_Answer]]:
    class Handler(_Answer):
        pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Handler.url = f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    yield Handler
    server.shutdown()


def _json(value: object) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/dicom+json"}, json.dumps(value).encode()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ((200, {"Content-Type": "application/dicom+json"}, b"{not json"), "cannot be read"),
        (_json({"results": []}), "no list of results|malformed record"),
        (_json(["a string"]), "malformed record"),
        (_json([_record(**{"00080018": ["UI", "../../etc/passwd"]})]), "is not a DICOM UID"),
        (_json([_record(**{"0020000D": ["UI", "1." * 40 + "1"]})]), "is not a DICOM UID"),
        (_json([_record(**{"00080060": ["CS", "C R<script>"]})]), "malformed Modality"),
        ((500, {}, b"boom"), "answered HTTP 500"),
        ((401, {}, b""), "HTTP 401 .*check the credentials"),
    ],
)
def test_malformed_search_answers(hostile, answer, match):
    hostile.answer = answer
    source = open_source(parse_address(hostile.url), attempts=1, timeout=5)
    with pytest.raises(PacsError, match=match) as raised:
        source.find(Query(study_uid=STUDY))
    assert hostile.url in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            (200, {"Content-Type": 'multipart/related; type="application/dicom"'}, b"junk"),
            "cannot be read",
        ),
        ((200, {"Content-Type": "application/dicom"}, b"\0" * 200), "cannot be read"),
        ((200, {"Content-Length": str(10**12)}, b""), "would send 953674 MB"),
    ],
)
def test_malformed_or_huge_instances_leave_nothing_in_the_cache(hostile, tmp_path, answer, match):
    hostile.answer = answer
    source = open_source(parse_address(hostile.url), attempts=1, timeout=5)
    ref = InstanceRef(STUDY, SERIES, SOP, CR, "CR", 64, 64)
    cache = InstanceCache(tmp_path)
    with pytest.raises(PacsError, match=match):
        cache.get(source, ref)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def _multipart(data: bytes) -> tuple[int, dict[str, str], bytes]:
    boundary = "cxrxai-hostile"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return 200, {"Content-Type": kind}, body


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_hostile_image_catalogue_served_by_a_pacs(hostile, tmp_path, name):
    """Each file of the uploads' catalogue, as a WADO-RS answer: refused with a clear
    error, nothing near its declared size allocated, nothing cached."""
    make, reason = HOSTILE[name]
    hostile.answer = _multipart(make())
    source = open_source(parse_address(hostile.url), attempts=1, timeout=5)
    # the search said 64 x 64, and the UID the catalogue's DICOM files carry
    sop = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).SOPInstanceUID)
    ref = InstanceRef(STUDY, SERIES, sop, CR, "CR", 64, 64)
    tracemalloc.start()
    try:
        with pytest.raises(CxrxaiError) as raised:
            InstanceCache(tmp_path).get(source, ref)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Traceback" not in str(raised.value)
    if "dicom" in name:  # the DICOM ones for the same reason as an upload (a deflated one
        assert reason in str(raised.value)  # before dicomweb-client's pydicom inflates it)
    assert peak < 200 << 20
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_a_slow_pacs_is_named_after_the_timeout(hostile):
    """A PACS that accepts the connection but does not answer within --pacs-timeout."""
    import time

    def slow(handler: _Answer) -> None:
        time.sleep(3)
        _Answer.do_GET(handler)

    hostile.do_GET = slow
    source = open_source(parse_address(hostile.url), attempts=1, timeout=1)
    started = time.monotonic()
    with pytest.raises(PacsError, match=r"cannot be reached .*Timeout") as raised:
        source.find(Query(study_uid=STUDY))
    assert hostile.url in str(raised.value) and time.monotonic() - started < 3


def test_without_the_pacs_extra_the_options_say_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    from cxrxai.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "highdicom" else real(name)
    )
    assert main(["pacs-find", "--url", "http://127.0.0.1:9/dicom-web", "--study", STUDY]) == 2
    err = capsys.readouterr().err
    assert "pip install -r requirements-pacs.txt" in err and "Traceback" not in err


def test_tls_with_a_private_ca_and_a_bearer_token(hostile, tls_files, monkeypatch):
    """HTTPS to a PACS whose certificate a private CA signed ($CXRXAI_PACS_CA_BUNDLE), the
    token from $CXRXAI_PACS_TOKEN sent as a bearer; without the CA the certificate is
    refused, and the token is in no message."""
    import ssl

    from cxrxai.pacs.address import load_credentials

    cert, key = tls_files["orthanc.pem"], tls_files["orthanc.key"]  # the CA's, for 127.0.0.1
    seen: list[str | None] = []

    def record(handler: _Answer) -> None:
        seen.append(handler.headers.get("Authorization"))
        _Answer.do_GET(handler)

    hostile.do_GET = record
    hostile.answer = _json([_record()])
    server = ThreadingHTTPServer(("127.0.0.1", 0), hostile)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/dicom-web"
    try:
        env = {"CXRXAI_PACS_TOKEN": "tok-SECRET-42"}
        with pytest.raises(PacsError, match="cannot be reached") as raised:
            open_source(parse_address(url), load_credentials(environ=env), attempts=1).find(
                Query(study_uid=STUDY)
            )
        assert "CXRXAI_PACS_CA_BUNDLE" in str(raised.value)
        assert "tok-SECRET-42" not in str(raised.value)
        trusted = load_credentials(
            environ={**env, "CXRXAI_PACS_CA_BUNDLE": str(tls_files["ca.pem"])}
        )
        (found,) = open_source(parse_address(url), trusted, attempts=1).find(Query(study_uid=STUDY))
        assert found.sop_uid == SOP and seen[-1] == "Bearer tok-SECRET-42"
    finally:
        server.shutdown()
