"""Where a PACS is and how to sign in to it, kept apart so that what is shown never
holds a secret.

Addresses: ``http(s)://host[:port]/path`` is a DICOMweb service (QIDO-RS, WADO-RS,
STOW-RS); ``dicom://AET@host:port`` a DIMSE one (C-FIND, C-GET, C-STORE), and
``dicoms://AET@host:port`` the same over DICOM TLS. Credentials never come in the address:
they come from the environment (``CXRXAI_PACS_USER`` and ``CXRXAI_PACS_PASSWORD`` for HTTP
basic auth, ``CXRXAI_PACS_TOKEN`` for a bearer token, ``CXRXAI_PACS_CA_BUNDLE`` for a
private certificate authority, ``CXRXAI_PACS_CLIENT_CERT`` and ``CXRXAI_PACS_CLIENT_KEY``
for the certificate a DICOM TLS peer asks of cxrxai) or from a JSON file (``{"user": ...,
"password": ...}`` or ``{"token": ...}``, and ``ca``, ``client_cert``, ``client_key``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cxrxai.errors import PacsError

USER_ENV, PASSWORD_ENV, TOKEN_ENV, CA_ENV = (
    "CXRXAI_PACS_USER",
    "CXRXAI_PACS_PASSWORD",
    "CXRXAI_PACS_TOKEN",
    "CXRXAI_PACS_CA_BUNDLE",
)
CLIENT_CERT_ENV, CLIENT_KEY_ENV = "CXRXAI_PACS_CLIENT_CERT", "CXRXAI_PACS_CLIENT_KEY"
CALLING_AET = "CXRXAI"
_AET = re.compile(r"^[A-Za-z0-9_ .-]{1,16}$")
MAX_CREDENTIALS_FILE = 64 << 10
# what a credentials file may hold
FILE_KEYS = ("user", "password", "token", "ca", "client_cert", "client_key")


@dataclass(frozen=True)
class PacsAddress:
    """A PACS: ``kind`` "dicomweb" (``url``) or "dimse" (``host``, ``port``,
    ``called_aet``; ``calling_aet`` is cxrxai's own title; ``tls``: DICOM TLS)."""

    kind: Literal["dicomweb", "dimse"]
    url: str
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = CALLING_AET
    tls: bool = False

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class Credentials:
    """How to sign in; ``repr`` never shows the secrets."""

    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    client_cert: Path | None = None  # DICOM TLS: what cxrxai shows a peer that asks
    client_key: Path | None = None

    def __repr__(self) -> str:
        way = "bearer token" if self.token else "basic auth" if self.user else "none"
        return f"Credentials({way}, ca_bundle={self.ca_bundle}, client_cert={self.client_cert})"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.token) if s)


def parse_address(text: str, calling_aet: str = CALLING_AET) -> PacsAddress:
    """A PACS address from the command line or the dashboard; credentials in it are
    refused (they would be shown and logged with it)."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise PacsError(f"PACS address '{_shown(text)}' is malformed ({exc}).") from exc
    if parts.password is not None or (
        parts.scheme not in ("dicom", "dicoms") and parts.username is not None
    ):
        raise PacsError(
            f"PACS address '{_shown(text)}' holds credentials: remove them from the address "
            f"and set ${USER_ENV} / ${PASSWORD_ENV} (or ${TOKEN_ENV}), or pass "
            "--pacs-credentials FILE."
        )
    if not _AET.match(calling_aet):
        raise PacsError(f"Calling AE title '{calling_aet[:20]}' must be 1-16 letters/digits.")
    if parts.scheme in ("http", "https") and parts.hostname:
        return PacsAddress("dicomweb", text.rstrip("/"), parts.hostname, port or 0)
    if parts.scheme in ("dicom", "dicoms") and parts.hostname and port:
        aet = parts.username or "ANY-SCP"
        if not _AET.match(aet):
            raise PacsError(f"AE title '{aet[:20]}' in '{_shown(text)}' must be 1-16 characters.")
        tls = parts.scheme == "dicoms"
        return PacsAddress("dimse", text, parts.hostname, port, aet, calling_aet, tls)
    raise PacsError(
        f"PACS address '{_shown(text)}' is neither DICOMweb (http(s)://host:port/dicom-web) "
        "nor DIMSE (dicom://AET@host:port, dicoms:// for DICOM TLS)."
    )


def load_credentials(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Credentials from ``path`` (JSON) when given, else from the environment."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    if path is not None:
        try:
            if path.stat().st_size > MAX_CREDENTIALS_FILE:
                raise PacsError(f"Credentials file '{path}' is larger than 64 KB.")
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PacsError(
                f"Credentials file '{path}' cannot be read as JSON ({type(exc).__name__}); "
                'write {"user": ..., "password": ...} or {"token": ...}.'
            ) from exc
        if not isinstance(loaded, dict) or not all(
            isinstance(v, str) for k, v in loaded.items() if k in FILE_KEYS
        ):
            raise PacsError(
                f"Credentials file '{path}' must hold an object with string values "
                '"user"/"password" or "token".'
            )
        values = {k: v for k, v in loaded.items() if k in FILE_KEYS}
    else:
        for key, name in (("user", USER_ENV), ("password", PASSWORD_ENV), ("token", TOKEN_ENV)):
            if env.get(name):
                values[key] = env[name]
    ca = values.get("ca") or env.get(CA_ENV)
    cert = values.get("client_cert") or env.get(CLIENT_CERT_ENV)
    key = values.get("client_key") or env.get(CLIENT_KEY_ENV)
    if values.get("password") and not values.get("user"):
        raise PacsError(f"A PACS password is set without a user (${USER_ENV}).")
    if bool(cert) != bool(key):
        raise PacsError(
            f"A client certificate needs its key and a key its certificate: set both "
            f"${CLIENT_CERT_ENV} and ${CLIENT_KEY_ENV} (or client_cert and client_key)."
        )
    return Credentials(
        values.get("user"),
        values.get("password"),
        values.get("token"),
        Path(ca) if ca else None,
        Path(cert) if cert else None,
        Path(key) if key else None,
    )


def redact(text: str, credentials: Credentials) -> str:
    """``text`` (a library's error message) without any secret in it."""
    for secret in credentials.secrets():
        text = text.replace(secret, "***")
    return text


def _shown(text: str) -> str:
    """An address as it may be shown: any user:password@ part cut out."""
    return re.sub(r"//[^/@]*@", "//***@", text)[:200]
