"""Entering numba's parallel kernels from several threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.Lock()


def run(kernel: Callable[..., Any], *args: Any) -> Any:
    """Call a numba ``parallel=True`` kernel. numba's default threading layer
    (workqueue) must not be entered by two threads at once, and Streamlit serves each
    session from its own thread, so calls are serialised; kernels take milliseconds."""
    with _LOCK:
        return kernel(*args)
