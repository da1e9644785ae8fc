"""Run Debian's Orthanc so that only this machine's loopback can reach it.

Orthanc 1.10 has no bind-address option: it listens on every interface. This launcher
opens its two listening sockets on 127.0.0.1 first, then moves itself into a network
namespace of its own that has only a loopback interface (``unshare(CLONE_NEWNET)``),
starts Orthanc there, and relays each connection from the host's loopback to Orthanc's.
Nothing outside this machine can reach the Orthanc, whatever it listens on.

Written by hand because neither Orthanc nor a Debian package offers a loopback-only
Orthanc; it uses the standard library only so that the tests, bench/ and the README's
recipe can all start Orthanc the same way.

Usage::

    python scripts/orthanc_loopback.py --storage DIR [--http-port 8042] [--dicom-port 4242]
        [--user NAME:PASSWORD] [--aet ORTHANC] [--web-viewer] [--dicom-tls CERT KEY CA]

It prints one JSON line ``{"http": PORT, "dicom": PORT}`` when Orthanc answers, and stops
Orthanc when it gets SIGTERM / SIGINT or its stdin closes (``--until-stdin-closes``).
Needs root or unprivileged user namespaces (``unshare -rn`` works).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
PR_SET_PDEATHSIG = 1
INNER_HTTP, INNER_DICOM = 8042, 4242
PLUGINS = Path("/usr/share/orthanc/plugins")


def _unshare_network() -> None:
    """This process into a new network namespace (as a user namespace's root when it is
    not root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise SystemExit(
            f"orthanc_loopback: cannot make a network namespace ({os.strerror(errno)}); "
            "run as root or enable unprivileged user namespaces"
        )
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (sink, source):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(listener: socket.socket, inner_port: int) -> None:
    """Each connection accepted on the host's loopback, joined to Orthanc's port in the
    namespace (sockets made after the unshare live there)."""
    while True:
        try:
            outer, _ = listener.accept()
        except OSError:
            return
        try:
            inner = socket.create_connection(("127.0.0.1", inner_port), timeout=10)
            inner.settimeout(None)
        except OSError:
            outer.close()
            continue
        for a, b in ((outer, inner), (inner, outer)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _config(
    storage: Path,
    aet: str,
    user: str | None,
    web_viewer: bool = False,
    tls: tuple[Path, Path, Path] | None = None,
) -> dict:
    config: dict = {
        "Name": "cxrxai-loopback",
        "StorageDirectory": str(storage / "db"),
        "IndexDirectory": str(storage / "db"),
        "HttpPort": INNER_HTTP,
        "DicomPort": INNER_DICOM,
        "DicomAet": aet,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowStore": True,
        "UnknownSopClassAccepted": False,
        "RemoteAccessAllowed": False,
        "SaveJobs": False,
        "StableAge": 1,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 8,
        "Plugins": [str(PLUGINS / "libOrthancDicomWeb.so")]
        + ([str(PLUGINS / "libOrthancWebViewer.so")] if web_viewer else []),
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
    }
    if user:
        name, _, password = user.partition(":")
        config["AuthenticationEnabled"] = True
        config["RegisteredUsers"] = {name: password}
    if tls:  # DICOM TLS on the DIMSE port; callers must show a certificate the CA signed
        certificate, key, trusted = tls
        config["DicomTlsEnabled"] = True
        config["DicomTlsCertificate"] = str(certificate)
        config["DicomTlsPrivateKey"] = str(key)
        config["DicomTlsTrustedCertificates"] = str(trusted)
        config["DicomTlsRemoteCertificateRequired"] = True
    return config


def _answering(port: int, user: str | None, deadline: float) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/system")
    if user:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=1):
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, required=True, help="Orthanc's own folder")
    parser.add_argument("--http-port", type=int, default=0, help="host loopback port (0: free)")
    parser.add_argument("--dicom-port", type=int, default=0, help="host loopback port (0: free)")
    parser.add_argument("--aet", default="ORTHANC")
    parser.add_argument("--user", default=None, help="NAME:PASSWORD for HTTP basic auth")
    parser.add_argument("--until-stdin-closes", action="store_true")
    parser.add_argument(
        "--web-viewer", action="store_true", help="load orthanc-webviewer's plugin too"
    )
    parser.add_argument(
        "--dicom-tls",
        nargs=3,
        type=Path,
        metavar=("CERT", "KEY", "CA"),
        help="DICOM TLS on the DIMSE port: Orthanc's certificate and key (PEM), and the CA "
        "whose certificates callers must show",
    )
    args = parser.parse_args(argv)
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not os.access(orthanc, os.X_OK):
        raise SystemExit("orthanc_loopback: Orthanc is not installed (apt-get install orthanc)")
    # Listening sockets first: they stay in the host's namespace, on its loopback only.
    http, dicom = _listen(args.http_port), _listen(args.dicom_port)
    _unshare_network()
    _loopback_up()
    args.storage.mkdir(parents=True, exist_ok=True)
    config = args.storage / "orthanc.json"
    tls = tuple(p.resolve() for p in args.dicom_tls) if args.dicom_tls else None
    settings = _config(args.storage, args.aet, args.user, args.web_viewer, tls)
    config.write_text(json.dumps(settings, indent=1))
    log = (args.storage / "orthanc.log").open("ab")
    # Orthanc dies with this launcher even if it is killed outright (SIGKILL cannot be
    # caught): the kernel sends Orthanc SIGKILL when its parent goes. The launcher has no
    # thread yet, so preexec_fn is safe here.
    server = subprocess.Popen(
        [orthanc, str(config)], stdout=log, stderr=log, preexec_fn=_die_with_parent
    )

    def _stop(*_: object) -> None:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for listener, inner in ((http, INNER_HTTP), (dicom, INNER_DICOM)):
        threading.Thread(target=_relay, args=(listener, inner), daemon=True).start()
    if not _answering(INNER_HTTP, args.user, time.monotonic() + 30):
        server.kill()
        raise SystemExit(f"orthanc_loopback: Orthanc did not start; see {args.storage}/orthanc.log")
    ports = {"http": http.getsockname()[1], "dicom": dicom.getsockname()[1]}
    print(json.dumps(ports), flush=True)
    if args.until_stdin_closes:
        sys.stdin.read()
        _stop()
    while server.poll() is None:
        time.sleep(0.5)
    return server.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
