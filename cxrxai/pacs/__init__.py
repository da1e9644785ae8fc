"""Talk DICOM with a PACS: find and fetch radiographs (DICOMweb or DIMSE), send results
back as standard DICOM objects.

An optional extra (``pip install -r requirements-pacs.txt``: highdicom, dicomweb-client,
pynetdicom); nothing outside this package imports those libraries, and
:func:`require` says how to install them when they are missing.
"""

from __future__ import annotations

import importlib.util

from cxrxai.errors import CxrxaiError

PACS_LIBRARIES = ("highdicom", "dicomweb_client", "pynetdicom")


def require() -> None:
    """Raise a clear error when the PACS extra is not installed."""
    missing = [name for name in PACS_LIBRARIES if importlib.util.find_spec(name) is None]
    if missing:
        raise CxrxaiError(
            f"The PACS features need {', '.join(missing)}: "
            "pip install -r requirements-pacs.txt (in the .venv)."
        )
