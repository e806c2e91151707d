#!/usr/bin/env bash
# The Ansible testbed (tests/testbed.py): tools on the controller, then the cached Debian 12 host image and the
# .debs of the local apt mirror under /var/cache/fjord-testbed. Idempotent; seconds when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in debootstrap:debootstrap ssh:openssh-client apt-ftparchive:apt-utils setpriv:util-linux ip:iproute2; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi
python3 tests/testbed.py prepare
