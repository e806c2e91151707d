#!/usr/bin/env bash
# The linters of the GitOps pipelines' tests (docs/gitops.md, tests/test_gitops_pipelines.py):
# - actionlint, built from its Go module through the Go module proxy into a cache outside the repository:
#     ${FJORD_ACTIONLINT_CACHE:-/var/cache/fjord-actionlint}/<version>/bin/actionlint
# - shellcheck from Debian's packages (actionlint runs it on every `run:` script; the tests on ci/gitops/*.sh).
# The workflow schemas come with the check-jsonschema dev dependency. Idempotent: instant when all are there.
set -euo pipefail
version=v1.7.12
cache=${FJORD_ACTIONLINT_CACHE:-/var/cache/fjord-actionlint}
bin="$cache/$version/bin"

if ! command -v shellcheck >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends shellcheck >/dev/null
  echo "setup-actionlint: installed shellcheck"
fi

if [ -x "$bin/actionlint" ] && "$bin/actionlint" -version 2>/dev/null | head -1 | grep -qx "$version"; then
  echo "setup-actionlint: actionlint $version already in $bin"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "setup-actionlint: needs Go 1.24+ (the distribution's golang package or go.dev/dl)" >&2
  exit 1
fi
mkdir -p "$bin"
start=$(date +%s)
# GOBIN puts the binary in the cache; Go's module and build caches stay where Go keeps them (outside the repo).
# -ldflags sets the version the binary reports, as actionlint's own release build does.
GOBIN="$bin" GOFLAGS=-mod=mod go install \
  -ldflags "-s -w -X github.com/rhysd/actionlint.version=$version" \
  "github.com/rhysd/actionlint/cmd/actionlint@$version"
echo "setup-actionlint: built actionlint $version into $bin in $(( $(date +%s) - start )) s"
