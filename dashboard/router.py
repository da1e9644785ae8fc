"""The one private piece of Streamlit the pages use (its adapter, checked by
tests/test_thirdparty.py against the installed version)."""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def through_the_router() -> None:
    """Make sure this page runs inside app.py's navigation; every page calls it first.

    Until some session has run ``st.navigation``, Streamlit serves a ``pages/`` folder in
    its legacy mode: the first visitor after a start who opens a page's own address (a
    rater's study link) got that page without app.py - a menu listing every file of
    ``pages/``, the default layout - and so did every later visitor until someone opened
    the home page. Leaving that mode for the whole
    server is what ``st.navigation`` itself does on its first call; the page is then
    rerun through app.py, same address and query parameters (Streamlit has no public
    switch for this: ``pages/`` is where this project's pages live).
    """
    global _LEFT_LEGACY_MODE
    # Once per process, as st.navigation would: Streamlit never re-enters the mode (only
    # its AppTest harness resets the flag before every run; rerunning each time there
    # would drop the button click that started the run).
    if not _LEFT_LEGACY_MODE and getattr(PagesManager, "uses_pages_directory", False):
        _LEFT_LEGACY_MODE = True
        PagesManager.uses_pages_directory = False
        st.rerun()


_LEFT_LEGACY_MODE = False
