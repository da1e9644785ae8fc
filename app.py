"""cxrxai dashboard: a thin router over the pages in ``pages/``.

Run with ``streamlit run app.py`` (the README's first command does it for you).
"""

import streamlit as st

st.set_page_config(page_title="cxrxai — chest X-ray explanation review", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/review.py", title="Review", icon=":material/radiology:", default=True),
        st.Page("pages/cases.py", title="Cases", icon=":material/table_view:"),
        st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
        st.Page("pages/pacs.py", title="PACS", icon=":material/cloud_sync:"),
        st.Page("pages/study.py", title="Study", icon=":material/how_to_vote:"),
        st.Page(
            "pages/study_admin.py", title="Study admin", icon=":material/admin_panel_settings:"
        ),
    ]
)
navigation.run()
