"""One face for every PACS: find instances, fetch one, store objects.

:class:`PacsSource` is what the rest of cxrxai calls; :func:`cxrxai.pacs.connect.open_source`
picks the backend from the address (DICOMweb: :mod:`cxrxai.pacs.dicomweb`, DIMSE:
:mod:`cxrxai.pacs.dimse`). Every answer from a PACS is checked before it is used: it may
be down, slow, or hostile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pydicom

from cxrxai.errors import PacsError
from cxrxai.pacs.address import PacsAddress

# Projection radiographs cxrxai explains; anything else on a study is left out by modality.
RADIOGRAPH_MODALITIES = ("CR", "DX")
# Objects on a study that may hold a case's truth (an earlier reading's regions).
ANNOTATION_MODALITIES = ("SEG", "SR")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_FOUND = 10_000


@dataclass(frozen=True)
class Query:
    """What to look for: a study by its UID, or an accession number, narrowed to
    modalities (default: the radiographs; none: every instance of the study)."""

    study_uid: str | None = None
    accession: str | None = None
    modalities: tuple[str, ...] = RADIOGRAPH_MODALITIES
    limit: int = 1000

    def __post_init__(self) -> None:
        if self.study_uid is not None:
            check_uid(self.study_uid, "--study")
        if self.accession is not None and not re.fullmatch(r"[ -~]{1,16}", self.accession):
            raise PacsError("--accession must be 1-16 printable characters.")
        for modality in self.modalities:
            if not re.fullmatch(r"[A-Z]{2,16}", modality):
                raise PacsError(f"Modality '{modality[:20]}' is not a DICOM modality code (CR).")
        if self.study_uid is None and self.accession is None and not self.modalities:
            raise PacsError("Name a study (--study), an accession (--accession) or modalities.")
        if not 1 <= self.limit <= MAX_FOUND:
            raise PacsError(f"The search limit must be 1-{MAX_FOUND}, got {self.limit}.")


def search(study: str | None, accession: str | None, modalities: str) -> Query:
    """A :class:`Query` from what a user typed (the CLI's options, the PACS page's fields):
    blanks are left out, ``modalities`` is comma-separated, any case."""
    kinds = tuple(m.strip().upper() for m in modalities.split(",") if m.strip())
    return Query((study or "").strip() or None, (accession or "").strip() or None, kinds)


@dataclass(frozen=True)
class InstanceRef:
    """One instance found on a PACS: its UIDs and what its header says of its size."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    series_number: int | None = None
    instance_number: int | None = None


class PacsSource(Protocol):
    """A PACS cxrxai talks to."""

    address: PacsAddress

    def find(self, query: Query) -> list[InstanceRef]:
        """The instances matching ``query``, at most ``query.limit``."""
        ...

    def fetch(self, ref: InstanceRef, max_bytes: int) -> bytes:
        """One instance as a DICOM file (Part 10 bytes), refused past ``max_bytes``."""
        ...

    def store(self, datasets: Sequence[pydicom.Dataset]) -> None:
        """Send objects to the PACS (STOW-RS or C-STORE)."""
        ...

    def close(self) -> None: ...


def check_uid(value: object, what: str) -> str:
    """A DICOM UID (digits and dots, at most 64), else a :class:`PacsError` naming it."""
    if not isinstance(value, str) or len(value) > 64 or not _UID.match(value):
        raise PacsError(f"{what} '{str(value)[:70]}' is not a DICOM UID (digits and dots).")
    return value


def instance_ref(values: Mapping[str, Any], shown: str) -> InstanceRef:
    """An :class:`InstanceRef` from an answer's attributes by keyword (a QIDO-RS JSON
    record or a C-FIND identifier), each checked: a hostile PACS may send anything."""

    def _int(keyword: str) -> int | None:
        value = values.get(keyword)
        try:
            number = int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            raise PacsError(f"{shown} sent {keyword} '{str(value)[:20]}', not a number.") from None
        if number is not None and not 0 <= number < 2**31:
            raise PacsError(f"{shown} sent {keyword} {number}, out of range.")
        return number

    modality = values.get("Modality") or ""
    if not isinstance(modality, str) or not re.fullmatch(r"[A-Z0-9_]{0,16}", modality):
        raise PacsError(f"{shown} sent a malformed Modality '{str(modality)[:20]}'.")
    return InstanceRef(
        study_uid=check_uid(values.get("StudyInstanceUID"), f"{shown}'s StudyInstanceUID"),
        series_uid=check_uid(values.get("SeriesInstanceUID"), f"{shown}'s SeriesInstanceUID"),
        sop_uid=check_uid(values.get("SOPInstanceUID"), f"{shown}'s SOPInstanceUID"),
        sop_class_uid=check_uid(values.get("SOPClassUID"), f"{shown}'s SOPClassUID"),
        modality=modality,
        rows=_int("Rows"),
        columns=_int("Columns"),
        frames=_int("NumberOfFrames") or 1,
        series_number=_int("SeriesNumber"),
        instance_number=_int("InstanceNumber"),
    )


FOUND_KEYWORDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SeriesNumber",
    "InstanceNumber",
)
