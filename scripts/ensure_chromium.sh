#!/usr/bin/env bash
# The end-to-end browser test drives Debian's Chromium (Playwright never downloads a
# browser here: the machine has no network beyond the package registries).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "Installing Debian's chromium for the browser test..."
if [ "$(id -u)" = 0 ]; then
  apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null
elif command -v sudo >/dev/null; then
  sudo apt-get update -q >/dev/null && sudo apt-get install -y -q chromium >/dev/null
else
  echo "error: /usr/bin/chromium is missing and this user cannot install it;" \
       "run 'apt-get install chromium' as root" >&2
  exit 1
fi
