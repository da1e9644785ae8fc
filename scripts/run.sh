#!/usr/bin/env bash
# Set up (if needed) and open the dashboard on the bundled demo checkpoint.
# Extra arguments go to streamlit, e.g. scripts/run.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
# First start: cache the demo cases' explanations so the dashboard shows them at once, and
# score them (results/demo-evaluation.sqlite) so the Cases page has something to browse.
CACHE_DIR="${CXRXAI_CACHE:-cache/heatmaps}"
if [ -z "$(find "$CACHE_DIR" -name '*.npz' -print -quit 2>/dev/null)" ] \
    || [ ! -f results/demo-evaluation.sqlite ]; then
    .venv/bin/python -m cxrxai precompute-demo || echo "(precomputing failed; the dashboard computes maps on demand)"
fi
# Compile (first start) or load the numba kernels (metrics, quickshift) before a page needs them.
.venv/bin/python -c "from cxrxai.warmup import warm_up; warm_up()"
exec .venv/bin/python -m streamlit run app.py --browser.gatherUsageStats false "$@"
