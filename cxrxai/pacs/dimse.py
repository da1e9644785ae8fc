"""The DIMSE backend: C-FIND to find, C-GET to fetch (over the same association, so the
PACS needs no route back to cxrxai), C-STORE to store, through pynetdicom."""

from __future__ import annotations

import socket
import ssl
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
from cxrxai.pacs.address import CA_ENV, CLIENT_CERT_ENV, Credentials, PacsAddress
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

    def __init__(
        self,
        address: PacsAddress,
        timeout: float,
        attempts: int,
        credentials: Credentials | None = None,
    ) -> None:
        self.address = address
        self._timeout = timeout
        self._attempts = max(attempts, 1)
        self._tls = _tls_context(address, credentials or Credentials()) if address.tls else None

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
            try:
                assoc = ae.associate(
                    self.address.host,
                    self.address.port,
                    contexts=contexts,
                    ae_title=self.address.called_aet,
                    ext_neg=roles or None,
                    evt_handlers=handlers or None,
                    tls_args=(self._tls, self.address.host) if self._tls else None,
                )
            except ssl.SSLError as exc:  # pynetdicom lets some handshake failures through
                raise PacsError(self._tls_refused(exc)) from exc
            if assoc.is_established:
                break
            if assoc.is_rejected:  # a firm no: another try cannot help
                raise PacsError(
                    f"{self._shown} rejected the association (check the AE titles: "
                    f"called {self.address.called_aet}, calling {self.address.calling_aet})."
                )
        else:
            if self._tls and (why := self._tls_trouble()):
                raise PacsError(why)
            raise PacsError(
                f"{self._shown} cannot be reached ({self._attempts} attempts): is it running, "
                "and are the host, port and AE title right?"
                + ("" if self._tls else " A PACS that speaks DICOM TLS takes dicoms://.")
            )
        try:
            yield assoc
        finally:
            assoc.release()

    def _tls_trouble(self) -> str | None:
        """Why a DICOM TLS association failed, found by a handshake of our own (pynetdicom
        only logs it): None when the handshake and a first read go through."""
        assert self._tls is not None
        try:
            with (
                socket.create_connection(
                    (self.address.host, self.address.port), timeout=min(self._timeout, 10)
                ) as raw,
                self._tls.wrap_socket(raw, server_hostname=self.address.host) as tls,
            ):
                tls.settimeout(2)
                try:
                    tls.recv(1)  # a peer that wanted our certificate says so now (TLS 1.3)
                except TimeoutError:
                    pass  # it waits for us: the handshake was not the trouble
                return None
        except ssl.SSLCertVerificationError as exc:
            return (
                f"{self._shown}'s certificate is not trusted ({exc.verify_message}): give its "
                f"CA in ${CA_ENV} (a PEM file)."
            )
        except ssl.SSLError as exc:
            if "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc):
                return (
                    f"{self._shown} asks for cxrxai's certificate: set ${CLIENT_CERT_ENV} and "
                    "$CXRXAI_PACS_CLIENT_KEY (PEM files) to one its CA signed."
                )
            return self._tls_refused(exc)
        except OSError:
            return None  # not even TCP: the general message says it

    def _tls_refused(self, exc: ssl.SSLError) -> str:
        return (
            f"{self._shown} refused the DICOM TLS handshake ({exc.reason or exc}): its "
            f"certificate must come from the CA in ${CA_ENV}, and it may want cxrxai's "
            f"(${CLIENT_CERT_ENV} and its key)."
        )

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


def _tls_context(address: PacsAddress, credentials: Credentials) -> ssl.SSLContext:
    """DICOM TLS as a browser does HTTPS: the peer's certificate checked against the
    system's CAs or $CXRXAI_PACS_CA_BUNDLE, its name against the address's host; cxrxai's
    own certificate shown when one is given (most PACS ask for one)."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(credentials.ca_bundle) if credentials.ca_bundle else None,
        )
        if credentials.client_cert and credentials.client_key:
            context.load_cert_chain(credentials.client_cert, credentials.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise PacsError(
            f"The certificates for {address} cannot be read ({exc}); ${CA_ENV} names a PEM "
            f"file of CA certificates, ${CLIENT_CERT_ENV} and its key PEM files."
        ) from exc
    return context
