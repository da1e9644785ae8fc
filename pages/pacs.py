"""Find a study on a PACS and open its radiographs on the Review page (which can send
the results back: "Send to PACS")."""

from __future__ import annotations

import streamlit as st

from cxrxai.errors import CxrxaiError
from cxrxai.render import plain
from dashboard.pacs import find_on_pacs, open_study
from dashboard.router import through_the_router
from dashboard.shared import open_in_review

through_the_router()

st.title("PACS")
st.caption(
    "Search a PACS by DICOMweb (http(s)://host:port/dicom-web) or DIMSE "
    "(dicom://AET@host:port; dicoms:// over DICOM TLS). Credentials and certificates come "
    "from the server's environment ($CXRXAI_PACS_USER / $CXRXAI_PACS_PASSWORD or "
    "$CXRXAI_PACS_TOKEN; $CXRXAI_PACS_CA_BUNDLE, $CXRXAI_PACS_CLIENT_CERT), never from this "
    "page. Only UIDs, modality and size are shown; patient identifiers stay in the images."
)
url = st.text_input(
    "PACS address",
    key="pacs_url",
    placeholder="http://127.0.0.1:8042/dicom-web or dicom://ORTHANC@127.0.0.1:4242",
)
study_col, accession_col, modality_col = st.columns([3, 2, 1])
study = study_col.text_input("Study Instance UID", key="pacs_study")
accession = accession_col.text_input("or accession number", key="pacs_accession")
modalities = modality_col.text_input("Modalities", value="CR,DX", key="pacs_modalities")
if st.button("Search", type="primary", disabled=not url):
    try:
        st.session_state["pacs_found"] = find_on_pacs(url, study, accession, modalities)
        st.session_state["pacs_address"] = url  # the Review page's "Send to PACS" default
    except CxrxaiError as exc:
        st.session_state.pop("pacs_found", None)
        st.error(plain(str(exc)))
found = st.session_state.get("pacs_found")
if found is not None:
    st.dataframe(found, hide_index=True, width="stretch")
    studies = sorted({row["study"] for row in found})
    if not studies:
        st.info("Nothing found for this search.")
    else:
        chosen = st.selectbox("Study to open", studies)
        if st.button("Open its radiographs on Review"):
            try:
                with st.spinner("Fetching the study's radiographs…"):
                    cases = open_study(url, chosen)
            except CxrxaiError as exc:
                st.error(plain(str(exc)))
            else:
                open_in_review(cases[0], beside=cases)
