#!/usr/bin/env bash
# Object storage tests (issue 5): a real single-node Ceph with RGW from Debian's packages.
# The tests bootstrap and tear down their own throwaway cluster (tests/ceph_cluster.py); this only
# installs the binaries. Idempotent: quick when they are already there.
set -euo pipefail
need=(ceph-mon ceph-mgr ceph-osd radosgw ceph-common)
missing=()
for pkg in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "ceph: already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "ceph: installed ${missing[*]}"
