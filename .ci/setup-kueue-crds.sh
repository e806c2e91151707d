#!/usr/bin/env bash
# Kueue's CRDs for validating fjord's Kueue objects (issue 25): fetched from the Go module proxy
# (`sigs.k8s.io/kueue`, pinned version and checksum in tests/kueue_crds.py) into ~/.cache/fjord/kueue-crds/.
# Needs `go` (Debian's golang-go is enough: only `go mod download` is used). Idempotent: quick when cached.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends golang-go ca-certificates >/dev/null
fi
python3 tests/kueue_crds.py
