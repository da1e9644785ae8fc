"""Compile (first run: 15-25 s on 2 cores) or load from numba's on-disk cache every
parallel kernel, so that the first metrics or LIME map does not wait for the compiler.
``python -c "from cxrxai.warmup import warm_up; warm_up()"`` (scripts/run.sh and test.sh).
"""

from __future__ import annotations

from cxrxai.explain import superpixels
from cxrxai.metrics import cpu_kernels


def warm_up() -> None:
    """Every numba kernel: the metrics' and quickshift's."""
    cpu_kernels.warm_up()
    superpixels.warm_up()
