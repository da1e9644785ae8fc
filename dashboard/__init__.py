"""The dashboard's Streamlit glue, shared by the pages in ``pages/``: cached resources
(:mod:`dashboard.shared`, and per page :mod:`~dashboard.review`, :mod:`~dashboard.cases`,
:mod:`~dashboard.study`) and the router guard (:mod:`dashboard.router`). The library,
``cxrxai``, never imports Streamlit; this package is where the pages' helpers live, out
of ``pages/`` (whose every file Streamlit would list as a page)."""
