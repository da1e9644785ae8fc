#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
bash scripts/ensure_debian.sh
.venv/bin/python -m ruff check cxrxai tests pages app.py bench
# Compile the numba kernels (metrics, quickshift) once - numba caches them next to their
# modules - so that the dashboards the browser tests start load them instead of compiling.
.venv/bin/python -c "from cxrxai.warmup import warm_up; warm_up()"
exec .venv/bin/python -m pytest "$@"
