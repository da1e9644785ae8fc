"""Warm-up of every numba kernel, and serialised calls from threads."""

from __future__ import annotations

import threading

import numpy as np

from cxrxai.explain.superpixels import quickshift
from cxrxai.warmup import warm_up


def test_warm_up_compiles_or_loads_every_kernel():
    warm_up()  # metrics kernels and quickshift; must not raise


def test_quickshift_from_threads_at_once_agrees():
    """Streamlit serves sessions from threads; numba's workqueue layer must not be entered
    twice at once (parallel.run serialises the calls)."""
    image = np.random.default_rng(4).random((30, 30, 3))
    expected = quickshift(image, kernel_size=2, max_dist=5)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(quickshift(image, kernel_size=2, max_dist=5))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        np.testing.assert_array_equal(result, expected)
