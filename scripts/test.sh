#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
bash scripts/ensure_chromium.sh
.venv/bin/python -m ruff check cxrxai tests pages app.py bench
# Compile the numba metric kernels once (cached next to the module), so that the dashboard
# processes the browser tests start load them instead of each compiling them.
.venv/bin/python -c "from cxrxai.metrics.cpu_kernels import warm_up; warm_up()"
exec .venv/bin/python -m pytest "$@"
