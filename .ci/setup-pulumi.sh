#!/usr/bin/env bash
# The Pulumi engine for fjord's engine tests (docs/engine.md): the `pulumi` CLI built from Pulumi's published Go
# module at the version of the `pulumi` Python SDK pinned in pyproject.toml, plus the dynamic-provider shim
# `pulumi-resource-pulumi-python` that ships in the same release's sdk/v3 module, plus Pulumi's Python policy shim
# `pulumi-analyzer-policy-python` (docs/policy.md: how the engine runs fjord's policy pack without the Python
# language host, which the Go proxy does not serve). Everything lands in
#   ${FJORD_PULUMI_CACHE:-/var/cache/fjord-pulumi}/<version>/bin
# (tests/engine_env.py puts it on PATH). Go's module and build caches stay where Go keeps them (outside the repo).
# Idempotent: seconds when the binaries of that version are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^[[:space:]]*"pulumi==\([0-9.]*\)".*/\1/p' pyproject.toml)
[ -n "$version" ] || { echo "setup-pulumi: no exact 'pulumi==X.Y.Z' pin in pyproject.toml" >&2; exit 1; }
gomod_version=$(sed -n 's|^[[:space:]]*github.com/pulumi/pulumi/pkg/v3 v\([0-9.]*\).*|\1|p' .ci/pulumi/go.mod)
if [ "$gomod_version" != "$version" ]; then
  echo "setup-pulumi: .ci/pulumi/go.mod requires pkg/v3 v$gomod_version but pyproject.toml pins pulumi==$version" >&2
  exit 1
fi

cache=${FJORD_PULUMI_CACHE:-/var/cache/fjord-pulumi}
bin="$cache/$version/bin"

# Pulumi's policy shim: `pulumi-analyzer-policy-python`, a sh script in sdk/python/dist/ of Pulumi's sdk/v3 module
# up to v3.220.0 (Pulumi removed it from the module in v3.221.0, pulumi/pulumi#21684, when language hosts took
# over). The engine still starts it when no `pulumi-language-python` is installed (v3.260.0:
# pkg/resource/plugin/analyzer_plugin.go, NewPolicyAnalyzer, "fall back to the old behavior"): it runs
# `<python> -m pulumi.policy <engine> .` in the pack's folder, where pulumi.policy is the installed SDK's.
# Copied unmodified from the published module, verified against this go.sum hash (and by Go against sum.golang.org).
shim_module=github.com/pulumi/pulumi/sdk/v3@v3.219.0
shim_sum="h1:OwTSwk1ZuOI4hQUdSccWuIAuqs4fL/FcppesPOAKHQ8="
install_policy_shim() {
  local info dir sum
  info=$(cd / && go mod download -json "$shim_module")
  dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  sum=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",\{0,1\}$/\1/p')
  if [ "$sum" != "$shim_sum" ] || [ ! -f "$dir/python/dist/pulumi-analyzer-policy-python" ]; then
    echo "setup-pulumi: $shim_module: expected $shim_sum with python/dist/pulumi-analyzer-policy-python, got '$sum' in '$dir'" >&2
    exit 1
  fi
  install -m 0755 "$dir/python/dist/pulumi-analyzer-policy-python" "$bin/pulumi-analyzer-policy-python"
  echo "setup-pulumi: pulumi-analyzer-policy-python from $shim_module"
}

if [ -x "$bin/pulumi" ] && [ -x "$bin/pulumi-resource-pulumi-python" ] \
   && "$bin/pulumi" version 2>/dev/null | grep -qx "v$version"; then
  [ -x "$bin/pulumi-analyzer-policy-python" ] || install_policy_shim
  echo "setup-pulumi: pulumi v$version already in $bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "setup-pulumi: needs Go (go.dev/dl or the distribution's golang package)" >&2
  exit 1
fi

mkdir -p "$bin"
tmp=$(mktemp -d "$cache/$version/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd .ci/pulumi
# -mod=readonly: go.sum pins every module; a missing or changed one fails instead of being fetched silently.
# The version stamp is what Pulumi's own release build sets; the Automation API checks it.
go build -mod=readonly -trimpath -o "$tmp/pulumi" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$version" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
sdk_dir=$(go list -mod=readonly -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$tmp/pulumi-resource-pulumi-python"
mv -f "$tmp/pulumi-resource-pulumi-python" "$bin/"
install_policy_shim
mv -f "$tmp/pulumi" "$bin/"   # last: its presence marks a finished build
echo "setup-pulumi: built pulumi v$version into $bin in $(( $(date +%s) - start )) s"
