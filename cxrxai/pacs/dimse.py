"""The DIMSE backend: C-FIND to find, C-GET to fetch (over the same association, so the
PACS needs no route back to cxrxai), C-STORE to store, through pynetdicom."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pydicom.dataset import Dataset
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedSRStorage,
    SegmentationStorage,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as FIND_MODEL,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet as GET_MODEL,
)
from pynetdicom.status import code_to_category

from cxrxai.errors import PacsError
from cxrxai.pacs.address import PacsAddress
from cxrxai.pacs.source import FOUND_KEYWORDS, InstanceRef, Query, instance_ref

RADIOGRAPH_STORAGE = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
)
# readings a study may hold (cxrxai.pacs.truth), in the uncompressed syntaxes they come in
READING_STORAGE = (
    SegmentationStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
)
# What a C-GET may bring: the stored form of a radiograph, compressed ones included.
_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700


class DimseSource:
    """A DIMSE service (``address.kind == "dimse"``): one association per operation."""

    def __init__(self, address: PacsAddress, timeout: float, attempts: int) -> None:
        self.address = address
        self._timeout = timeout
        self._attempts = max(attempts, 1)

    def find(self, query: Query) -> list[InstanceRef]:
        studies = [query.study_uid] if query.study_uid else []
        if not studies and query.accession is not None:
            identifier = _identifier(
                "STUDY", StudyInstanceUID=None, AccessionNumber=query.accession
            )
            studies = [str(found.get("StudyInstanceUID", "")) for found in self._find(identifier)]
        refs: list[InstanceRef] = []
        keys: dict[str, str | None] = {keyword: None for keyword in FOUND_KEYWORDS}
        searches = (
            [{**keys, "StudyInstanceUID": study} for study in studies]
            if studies or query.accession is not None
            else [{**keys, "Modality": modality} for modality in query.modalities]
        )
        for search in searches:
            for found in self._find(_identifier("IMAGE", **search)):
                values = {keyword: found.get(keyword) for keyword in FOUND_KEYWORDS}
                refs.append(instance_ref(values, self._shown))
                if len(refs) >= query.limit:
                    break
        return [r for r in refs if not query.modalities or r.modality in query.modalities][
            : query.limit
        ]

    def fetch(self, ref: InstanceRef, max_bytes: int) -> bytes:
        received: dict[str, bytes] = {}
        refused: list[int] = []

        def _on_store(event: evt.Event) -> int:
            size = len(event.request.DataSet.getvalue())
            if size > max_bytes:
                refused.append(size)
                return OUT_OF_RESOURCES
            received[str(event.request.AffectedSOPInstanceUID)] = bytes(event.encoded_dataset())
            return SUCCESS

        identifier = _identifier(
            "IMAGE",
            StudyInstanceUID=ref.study_uid,
            SeriesInstanceUID=ref.series_uid,
            SOPInstanceUID=ref.sop_uid,
        )
        contexts = [build_context(GET_MODEL)]
        # one context per (class, syntax): the PACS picks one syntax per context, so a
        # context listing them all gets the first, and a compressed instance fails
        contexts += [
            build_context(sop, syntax) for sop in RADIOGRAPH_STORAGE for syntax in _SYNTAXES
        ]
        contexts += [build_context(sop, list(_SYNTAXES[:2])) for sop in READING_STORAGE]
        roles = [build_role(sop, scp_role=True) for sop in (*RADIOGRAPH_STORAGE, *READING_STORAGE)]
        with self._association(contexts, roles, [(evt.EVT_C_STORE, _on_store)]) as assoc:
            statuses = [status for status, _ in assoc.send_c_get(identifier, GET_MODEL)]
        if refused:
            raise PacsError(
                f"{self._shown} sent {refused[0] / 2**20:.0f} MB for instance {ref.sop_uid}; "
                f"the largest accepted is {max_bytes / 2**20:.0f} MB (see $CXRXAI_MAX_IMAGE_SIDE)."
            )
        for status in statuses:
            self._check_status(status, f"C-GET of {ref.sop_uid}", pending_ok=True)
        if ref.sop_uid not in received:
            raise PacsError(f"{self._shown} sent no instance {ref.sop_uid} for its C-GET.")
        return received[ref.sop_uid]

    def store(self, datasets: Sequence[Dataset]) -> None:
        contexts = []
        for sop, syntax in sorted(
            {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
        ):
            contexts.append(build_context(sop, syntax))
        with self._association(contexts) as assoc:
            for dataset in datasets:
                status = assoc.send_c_store(dataset)
                self._check_status(status, f"C-STORE of {dataset.SOPInstanceUID}")

    def close(self) -> None:
        """Nothing held between operations."""

    @property
    def _shown(self) -> str:
        return f"PACS {self.address}"

    def _find(self, identifier: Dataset) -> Iterator[Dataset]:
        contexts = [build_context(FIND_MODEL)]
        with self._association(contexts) as assoc:
            answers = list(assoc.send_c_find(identifier, FIND_MODEL))
        for status, found in answers:
            self._check_status(status, "C-FIND", pending_ok=True)
            if found is not None and code_to_category(int(status.Status)) == "Pending":
                yield found

    @contextmanager
    def _association(
        self, contexts: list, roles: list | None = None, handlers: list | None = None
    ) -> Iterator[Association]:
        ae = AE(ae_title=self.address.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self._timeout
        ae.connection_timeout = min(self._timeout, 10)
        for _attempt in range(self._attempts):
            assoc = ae.associate(
                self.address.host,
                self.address.port,
                contexts=contexts,
                ae_title=self.address.called_aet,
                ext_neg=roles or None,
                evt_handlers=handlers or None,
            )
            if assoc.is_established:
                break
            if assoc.is_rejected:  # a firm no: another try cannot help
                raise PacsError(
                    f"{self._shown} rejected the association (check the AE titles: "
                    f"called {self.address.called_aet}, calling {self.address.calling_aet})."
                )
        else:
            raise PacsError(
                f"{self._shown} cannot be reached ({self._attempts} attempts): is it running, "
                "and are the host, port and AE title right?"
            )
        try:
            yield assoc
        finally:
            assoc.release()

    def _check_status(self, status: Dataset, what: str, pending_ok: bool = False) -> None:
        if not status or "Status" not in status:
            raise PacsError(f"{self._shown} gave no answer to {what} (timed out or aborted).")
        code = int(status.Status)
        category = code_to_category(code)
        if category == "Success" or (pending_ok and category == "Pending"):
            return
        raise PacsError(f"{self._shown} answered {what} with status 0x{code:04X} ({category}).")


def _identifier(level: str, **values: str | None) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(identifier, keyword, value)
    return identifier
