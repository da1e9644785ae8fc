"""A real PACS for the tests: Debian's Orthanc (installed by the test command) started by
scripts/orthanc_loopback.py in a network namespace of its own, so only loopback reaches
it, with its storage in a temp folder; stopped by its pid.

Without Orthanc or the PACS extra the tests FAIL when CI=true and skip otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "scripts" / "orthanc_loopback.py"


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Orthanc:
    http: int
    dicom: int
    pid: int
    storage: Path

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.http}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"dicom://ORTHANC@127.0.0.1:{self.dicom}"


def start_orthanc(
    storage: Path, user: str | None = None, tls: tuple[Path, Path, Path] | None = None
) -> tuple[Orthanc, subprocess.Popen]:
    try:
        import dicomweb_client  # noqa: F401
        import highdicom  # noqa: F401
        import pynetdicom  # noqa: F401
    except ImportError as exc:
        _missing(
            f"{exc.name} missing: pip install -r requirements-pacs.txt (the test command does)"
        )
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        _missing(
            "Orthanc missing: apt-get install orthanc orthanc-dicomweb (the test command does)"
        )
    command = [sys.executable, str(LAUNCHER), "--storage", str(storage), "--until-stdin-closes"]
    if user:
        command += ["--user", user]
    if tls:
        command += ["--dicom-tls", *map(str, tls)]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        process.kill()
        err = process.stderr.read() if process.stderr else ""
        pytest.fail(f"Orthanc did not start: {err.strip()[-500:]}")
    ports = json.loads(line)
    return Orthanc(ports["http"], ports["dicom"], process.pid, storage), process


def stop(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    server, process = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    stop(process)


@pytest.fixture(scope="session")
def orthanc_with_auth(tmp_path_factory) -> Iterator[Orthanc]:
    server, process = start_orthanc(tmp_path_factory.mktemp("orthanc-auth"), "reader:s3cret-pw")
    yield server
    stop(process)


@pytest.fixture
def own_orthanc(tmp_path) -> Iterator[Orthanc]:
    """An Orthanc for one test alone (it starts in about 0.1 s): what it stores is seen by
    no other test's searches."""
    server, process = start_orthanc(tmp_path / "own-orthanc")
    yield server
    stop(process)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A private CA and the certificates it signed for Orthanc and for cxrxai (PEM, for
    127.0.0.1), made by openssl."""
    if shutil.which("openssl") is None:
        _missing("openssl missing: it makes the DICOM TLS tests' certificates")
    folder = tmp_path_factory.mktemp("tls")
    files = {name: folder / name for name in ("ca.pem", "ca.key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=cxrxai test CA",
        "-keyout",
        str(files["ca.key"]),
        "-out",
        str(files["ca.pem"]),
    )
    extension = folder / "san.cnf"
    extension.write_text("subjectAltName=IP:127.0.0.1\n")
    for who in ("orthanc", "cxrxai"):
        key, request, cert = (folder / f"{who}.{x}" for x in ("key", "csr", "pem"))
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(request),
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(request),
            "-CA",
            str(files["ca.pem"]),
            "-CAkey",
            str(files["ca.key"]),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(extension),
            "-out",
            str(cert),
        )
        files[f"{who}.pem"], files[f"{who}.key"] = cert, key
    return files  # fmt: skip


@pytest.fixture(scope="session")
def orthanc_tls(tmp_path_factory, tls_files) -> Iterator[Orthanc]:
    """An Orthanc whose DIMSE port speaks DICOM TLS only and asks callers for a
    certificate the test CA signed (its DICOMweb stays plain HTTP, on loopback)."""
    tls = (tls_files["orthanc.pem"], tls_files["orthanc.key"], tls_files["ca.pem"])
    server, process = start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), tls=tls)
    yield server
    stop(process)


@pytest.fixture(scope="session")
def stored_rg1(orthanc, rg1_files) -> dict[str, str]:
    """The pydicom-data CR (uncompressed and JPEG 2000 lossless) stored on the Orthanc by
    STOW-RS; their SOP Instance UIDs by name."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(orthanc.dicomweb)
    uids = {}
    for name in ("RG1_UNCR", "RG1_J2KR"):
        dataset = pydicom.dcmread(rg1_files[name])
        client.store_instances([dataset])
        uids[name] = str(dataset.SOPInstanceUID)
    return uids


# Warnings dciodvfy gives that are accepted (docs/dicom.md says why):
ACCEPTED = (
    # the source's Referring Physician's Name "ward" (one component), copied as sent
    "Retired Person Name form",
    # cxrxai's local coding scheme (declared in CodingSchemeIdentificationSequence)
    "Unrecognized defined term <99CXRXAI>",
)


def _dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's errors, and its warnings but the accepted ones."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        message = "dciodvfy missing: apt-get install dicom3tools (the test command does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    warnings = [line for line in lines if line.startswith("Warning")]
    return errors, [w for w in warnings if not any(a in w for a in ACCEPTED)]


@pytest.fixture
def dciodvfy():
    """Validate a written object: ``errors, warnings = dciodvfy(path)``."""
    return _dciodvfy
