#!/usr/bin/env bash
# Debian packages the tests need, installed when missing (the machine has no network beyond
# the package registries, so test tools never download their own):
#   chromium  the browser tests drive it (Playwright never downloads a browser here)
#   xvfb      xvfb-run: the FDA's iMRMC opens a window even in batch mode
# Usage: scripts/ensure_debian.sh   (no arguments)
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v xvfb-run >/dev/null || missing+=(xvfb)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing Debian's ${missing[*]} for the tests..."
if [ "$(id -u)" = 0 ]; then
  apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null; then
  sudo apt-get update -q >/dev/null && sudo apt-get install -y -q "${missing[@]}" >/dev/null
else
  echo "error: ${missing[*]} missing and this user cannot install them;" \
       "run 'apt-get install ${missing[*]}' as root" >&2
  exit 1
fi
