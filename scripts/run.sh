#!/usr/bin/env bash
# Set up (if needed) and open the dashboard on the bundled demo checkpoint.
# Extra arguments go to streamlit, e.g. scripts/run.sh --server.port 8600
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
exec .venv/bin/python -m streamlit run app.py --browser.gatherUsageStats false "$@"
