#!/usr/bin/env bash
# Debian packages the tests need, installed when missing (the machine has no network beyond
# the package registries, so test tools never download their own):
#   chromium          the browser tests drive it (Playwright never downloads a browser here)
#   xvfb              xvfb-run: the FDA's iMRMC opens a window even in batch mode
#   orthanc,          the real PACS of the PACS tests (DICOMweb plugin included); the tests
#   orthanc-dicomweb  start their own, loopback only (scripts/orthanc_loopback.py)
#   dicom3tools       dciodvfy, the validator every DICOM object cxrxai writes must pass
# Installing orthanc would start Debian's own Orthanc service, listening on every
# interface: a policy-rc.d that refuses service starts is in place while apt runs, unless
# the machine already has one.
# Usage: scripts/ensure_debian.sh   (no arguments)
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v xvfb-run >/dev/null || missing+=(xvfb)
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
command -v dciodvfy >/dev/null || missing+=(dicom3tools)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing Debian's ${missing[*]} for the tests..."
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "error: ${missing[*]} missing and this user cannot install them;" \
         "run 'apt-get install ${missing[*]}' as root" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
POLICY=/usr/sbin/policy-rc.d
OWN_POLICY=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# cxrxai scripts/ensure_debian.sh: no service starts while it installs\nexit 101\n' \
    | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  OWN_POLICY=1
fi
trap '[ "$OWN_POLICY" = 1 ] && "${SUDO[@]}" rm -f "$POLICY"' EXIT
"${SUDO[@]}" apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q "${missing[@]}" >/dev/null
