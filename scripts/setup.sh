#!/usr/bin/env bash
# Create .venv inside the repo and install everything (idempotent: reruns are quick).
# Usage: scripts/setup.sh [requirements-file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS="${1:-requirements.txt}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "error: cxrxai needs Python 3.11 (torch 2.14.1 / torchvision 0.29.1 builds);" \
         "found $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the requirement files change.
STAMP=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$REQUIREMENTS")"
if [ ! -f "$STAMP" ]; then
    echo "installing $REQUIREMENTS into .venv (about a minute)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    touch "$STAMP"
fi
