"""Open the backend an address names: the one place that knows both backends."""

from __future__ import annotations

from cxrxai.pacs import require
from cxrxai.pacs.address import Credentials, PacsAddress
from cxrxai.pacs.source import PacsSource


def open_source(
    address: PacsAddress,
    credentials: Credentials | None = None,
    timeout: float = 30.0,
    attempts: int = 3,
) -> PacsSource:
    """The backend for ``address``. ``timeout``: seconds a request may take;
    ``attempts``: tries of a request the PACS answered busy (429/503/504) or not at all."""
    require()
    credentials = credentials or Credentials()
    if address.kind == "dicomweb":
        from cxrxai.pacs.dicomweb import DicomWebSource

        return DicomWebSource(address, credentials, timeout, attempts)
    from cxrxai.pacs.dimse import DimseSource

    return DimseSource(address, timeout, attempts, credentials)
