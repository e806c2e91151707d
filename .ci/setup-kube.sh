#!/usr/bin/env bash
# A real Kubernetes API server for fjord's Kubernetes tests (docs/testing.md): `kube-apiserver` and `kubectl` built
# from the published Go module k8s.io/kubernetes, and `etcd` from go.etcd.io/etcd/server/v3 at the version that
# k8s.io/kubernetes itself requires (.ci/kube/go.mod pins all of it; go.sum holds every module's hash).
# Everything lands in
#   ${FJORD_KUBE_CACHE:-/var/cache/fjord-kube}/<version>/bin
# (tests/kube_env.py looks there). Go's module and build caches stay where Go keeps them (outside the repo).
# Idempotent: seconds when the binaries of that version are already there.
# No kubelet, scheduler or controller manager is built: the tests play the kubelet through the API.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^require k8s.io\/kubernetes \(v[0-9.]*\)\( .*\)\{0,1\}$/\1/p' .ci/kube/go.mod)
[ -n "$version" ] || { echo "setup-kube: no 'require k8s.io/kubernetes vX.Y.Z' line in .ci/kube/go.mod" >&2; exit 1; }
# The staging modules are replaced by the published ones of the same release: v1.X.Y -> v0.X.Y.
staging="v0.${version#v1.}"
if grep -P '^\tk8s\.io/[a-z-]+ => ' .ci/kube/go.mod | grep -qv " $staging\$"; then
  echo "setup-kube: .ci/kube/go.mod replaces a staging module at another version than $staging (k8s.io/kubernetes $version)" >&2
  exit 1
fi

cache=${FJORD_KUBE_CACHE:-/var/cache/fjord-kube}
bin="$cache/$version/bin"
if [ -x "$bin/etcd" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/kube-apiserver" ] \
   && "$bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $version"; then
  echo "setup-kube: kube-apiserver, kubectl and etcd of Kubernetes $version already in $bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "setup-kube: needs Go (go.dev/dl or the distribution's golang package)" >&2
  exit 1
fi

mkdir -p "$bin"
tmp=$(mktemp -d "$cache/$version/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd .ci/kube
# The version stamp is what Kubernetes' own release build sets (hack/lib/version.sh); `kubectl version` and the
# apiserver's /version report it.
minor=${version#v1.}
minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp="$stamp -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
# -mod=readonly: go.sum pins every module; a missing or changed one fails instead of being fetched silently.
# CGO_ENABLED=0: static binaries, as Kubernetes and etcd release them; no C toolchain needed.
export CGO_ENABLED=0
go build -mod=readonly -trimpath -o "$tmp/etcd" -ldflags "-s -w" go.etcd.io/etcd/server/v3
go build -mod=readonly -trimpath -o "$tmp/kubectl" -ldflags "-s -w$stamp" k8s.io/kubernetes/cmd/kubectl
go build -mod=readonly -trimpath -o "$tmp/kube-apiserver" -ldflags "-s -w$stamp" k8s.io/kubernetes/cmd/kube-apiserver
mv -f "$tmp/etcd" "$tmp/kubectl" "$bin/"
mv -f "$tmp/kube-apiserver" "$bin/"   # last: its presence marks a finished build
echo "setup-kube: built kube-apiserver, kubectl and etcd of Kubernetes $version into $bin in $(( $(date +%s) - start )) s"
