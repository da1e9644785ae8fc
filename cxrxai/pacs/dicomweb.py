"""The DICOMweb backend: QIDO-RS to find, WADO-RS to fetch, STOW-RS to store, through
dicomweb-client."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from io import BytesIO
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import add_certs_to_session
from requests.adapters import HTTPAdapter

from cxrxai.dicom import check_deflated_size
from cxrxai.errors import PacsError
from cxrxai.pacs.address import Credentials, PacsAddress, redact
from cxrxai.pacs.source import FOUND_KEYWORDS, InstanceRef, Query, instance_ref

T = TypeVar("T")
# PS3.18 8.7.3.5: "*" asks for the instance in the transfer syntax it is stored in, so
# a compressed radiograph comes as the modality sent it (Orthanc would transcode it).
AS_STORED = (("application/dicom", "*"),)


class _PinnedCA(HTTPAdapter):
    """HTTPS verified against the CA named for the PACS. requests lets
    $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE override a session's ``verify``
    (psf/requests#3829, #4726: open since 2015), so a private CA set on the session
    would be ignored on machines that set those; the adapter applies it per request."""

    def __init__(self, ca_bundle: str) -> None:
        super().__init__()
        self._ca_bundle = ca_bundle

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self._ca_bundle
        return super().send(request, **kwargs)


class DicomWebSource:
    """A DICOMweb service (``address.kind == "dicomweb"``)."""

    def __init__(
        self, address: PacsAddress, credentials: Credentials, timeout: float, attempts: int
    ) -> None:
        self.address = address
        self._credentials = credentials
        self._limit: int | None = None
        session = requests.Session()
        if credentials.user:
            session.auth = (credentials.user, credentials.password or "")
        if credentials.ca_bundle is not None:
            session = add_certs_to_session(session, str(credentials.ca_bundle))
            session.mount("https://", _PinnedCA(str(credentials.ca_bundle)))
        self._session = session
        session.hooks["response"].append(self._check_length)
        headers = {"Authorization": f"Bearer {credentials.token}"} if credentials.token else None
        self._client = DICOMwebClient(
            address.url, session=session, headers=headers, timeout=timeout
        )
        self._client.set_http_retry_params(
            retry=attempts > 1, max_attempts=max(attempts, 1), wait_exponential_multiplier=200
        )

    def find(self, query: Query) -> list[InstanceRef]:
        fields = list(FOUND_KEYWORDS)
        if query.study_uid is not None:
            studies = [query.study_uid]
        elif query.accession is not None:
            found = self._call(
                "search for the accession number",
                lambda: self._client.search_for_studies(
                    search_filters={"AccessionNumber": query.accession}, limit=query.limit
                ),
            )
            studies = [ref["StudyInstanceUID"] for ref in self._records(found)]
        else:
            studies = []
        records: list[dict[str, Any]] = []
        if studies:
            for study in studies:
                records += self._records(
                    self._call(
                        "search the study's instances",
                        lambda study=study: self._client.search_for_instances(
                            study_instance_uid=study, fields=fields, limit=query.limit
                        ),
                    )
                )
        else:
            for modality in query.modalities:
                records += self._records(
                    self._call(
                        f"search for {modality} instances",
                        lambda modality=modality: self._client.search_for_instances(
                            fields=fields, search_filters={"Modality": modality}, limit=query.limit
                        ),
                    )
                )
        refs = [instance_ref(record, self._shown) for record in records]
        return [r for r in refs if not query.modalities or r.modality in query.modalities][
            : query.limit
        ]

    def fetch(self, ref: InstanceRef, max_bytes: int) -> bytes:
        self._limit = max_bytes
        try:
            dataset = self._call(
                f"fetch instance {ref.sop_uid}",
                lambda: self._client.retrieve_instance(
                    ref.study_uid, ref.series_uid, ref.sop_uid, media_types=AS_STORED
                ),
            )
        finally:
            self._limit = None
        out = BytesIO()
        try:
            pydicom.dcmwrite(out, dataset, enforce_file_format=True)
        except Exception as exc:  # a hostile PACS may send any data set
            raise PacsError(
                f"{self._shown} sent instance {ref.sop_uid} in a form that cannot be written "
                f"as a DICOM file ({type(exc).__name__})."
            ) from exc
        return out.getvalue()

    def store(self, datasets: Sequence[pydicom.Dataset]) -> None:
        answer = self._call("store the objects", lambda: self._client.store_instances(datasets))
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(
                f"{self._shown} refused {len(failed)} of {len(datasets)} object(s) "
                f"(failure reason {', '.join(reasons)})."
            )

    def close(self) -> None:
        self._session.close()

    @property
    def _shown(self) -> str:
        return f"PACS {self.address}"

    def _check_length(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """While an instance is fetched, bound its answer before dicomweb-client parses it
        (pydicom would inflate a deflated data set whole: a small answer could hold
        gigabytes). requests runs response hooks before it reads the body, so this reads
        it here, at most the limit, and checks each Part 10 object's inflated size.
        Written by hand: dicomweb-client offers no bound on what it retrieves."""
        if self._limit is None:
            return
        limit = self._limit
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise PacsError(
                f"{self._shown} would send {int(declared) / 2**20:.0f} MB for one instance; "
                f"the largest accepted is {limit / 2**20:.0f} MB (see $CXRXAI_MAX_IMAGE_SIDE)."
            )
        body = response.raw.read(limit + 1, decode_content=True) or b""
        if len(body) > limit:
            response.close()
            raise PacsError(
                f"{self._shown} sent more than {limit / 2**20:.0f} MB for one instance; "
                "the largest accepted (see $CXRXAI_MAX_IMAGE_SIDE)."
            )
        start = body.find(b"DICM")
        while start >= 128:
            check_deflated_size(body[start - 128 :], f"{self._shown}'s instance", limit)
            start = body.find(b"DICM", start + 4)
        # the body, already read, handed back as requests keeps it (its content cache)
        response._content = body
        response._content_consumed = True

    def _records(self, found: object) -> list[dict[str, Any]]:
        if not isinstance(found, list):
            raise PacsError(f"{self._shown} answered a search with no list of results.")
        records = []
        for item in found:
            try:
                with warnings.catch_warnings():  # each value is checked in instance_ref
                    warnings.simplefilter("ignore")
                    dataset = pydicom.Dataset.from_json(item)
                records.append({key: dataset.get(key) for key in FOUND_KEYWORDS})
            except Exception as exc:  # any malformed JSON record
                raise PacsError(
                    f"{self._shown} answered a search with a malformed record "
                    f"({type(exc).__name__}: {str(exc)[:120]})."
                ) from exc
        return records

    def _call(self, what: str, request: Callable[[], T]) -> T:
        with self._errors(what):
            return request()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except PacsError:
            raise
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            hint = " (check the credentials)" if status in (401, 403) else ""
            raise PacsError(f"{self._shown} answered HTTP {status} to '{what}'{hint}.") from None
        except requests.exceptions.SSLError:
            raise PacsError(
                f"{self._shown} cannot be reached to {what} (SSLError): its certificate is "
                "not trusted here; name its CA with $CXRXAI_PACS_CA_BUNDLE (or the "
                'credentials file\'s "ca").'
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise PacsError(
                f"{self._shown} cannot be reached to {what} "
                f"({type(exc).__name__}): is it running, and is the address right?"
            ) from None
        except Exception as exc:  # malformed multipart, JSON, DICOM
            text = redact(str(exc), self._credentials)[:160]
            raise PacsError(
                f"{self._shown} sent an answer to '{what}' that cannot be read "
                f"({type(exc).__name__}: {text})."
            ) from None
