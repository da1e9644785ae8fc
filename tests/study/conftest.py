"""Fixtures of the study tests."""

from __future__ import annotations

import pytest

from cxrxai.study import service
from cxrxai.study.db import connect


@pytest.fixture()
def db(tmp_path):
    """A study database of its own, with the admin password "admin password"."""
    db = connect(tmp_path / "study.sqlite")
    service.set_admin_password(db, "admin password")
    return db
