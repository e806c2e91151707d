"""Kueue's CustomResourceDefinitions, for validating the Kueue objects fjord generates (ResourceFlavor,
ClusterQueue, LocalQueue) the way the NVIDIA operators' custom resources are validated.

Where they come from: the `sigs.k8s.io/kueue` Go module, as the Go module proxy serves it (`go mod download
-json sigs.k8s.io/kueue@<version>`), whose zip holds `config/components/crd/bases/*.yaml`; the module's
checksum is pinned here (and checked by `go` against the checksum database). Only the CRD files and the
module's LICENSE (Apache-2.0) are kept, in a cache outside the repository:
`$FJORD_CACHE_DIR/kueue-crds/<version>/` (default `$XDG_CACHE_HOME/fjord`, else `~/.cache/fjord`).

Why not vendored: the three CRDs fjord needs are ~140 KB of generated YAML that would go stale unnoticed;
fetching a pinned, checksummed module version keeps the repository small and the source plain. Why the Go
proxy: it is a package registry every machine here reaches, and Kueue publishes no package of its CRDs on
PyPI or npm.

Version: fjord deploys the Kueue chart 0.13.4 (fjord.platform.charts.KUEUE), but the Go proxy reachable here
serves only v0.17.0 of the module. v0.17.0 still serves `kueue.x-k8s.io/v1beta1` (deprecated in favour of
v1beta2), and the v1beta1 fields fjord uses are the same in both releases, so fjord's v1beta1 objects are
checked against v0.17.0's v1beta1 schema.

`.ci/setup-kueue-crds.sh` fills the cache (`python3 tests/kueue_crds.py`, standard library only); the tests
fetch on first use where `go` is installed. Missing (no `go`, no network): the tests that need them skip
with the reason, except in CI (FJORD_REQUIRE_INTEGRATION=1 or CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODULE = "sigs.k8s.io/kueue"
VERSION = "v0.17.0"
SUM = "h1:7hzb38M4eKGzYW+CFv2s1L+swzzacUCHOCXxZmAV90I="
"""The module zip's checksum (go.sum's h1: hash), as the checksum database has it."""
KINDS = ("resourceflavors", "clusterqueues", "localqueues")
BASES = "config/components/crd/bases"


class Unavailable(RuntimeError):
    """Kueue's CRDs are not in the cache and cannot be fetched here (the reason says why)."""


def cache_dir(version: str = VERSION) -> Path:
    base = os.environ.get("FJORD_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "fjord")
    return Path(base) / "kueue-crds" / version


def crd_files(version: str = VERSION) -> list[Path]:
    """The cached CRD files, fetching them first when the cache lacks any; raises Unavailable."""
    folder = cache_dir(version)
    files = [folder / f"kueue.x-k8s.io_{kind}.yaml" for kind in KINDS]
    if not all(f.is_file() for f in files):
        fetch(version)
    return files


def fetch(version: str = VERSION, expected_sum: str | None = SUM) -> Path:
    """Download the module through the Go module proxy and keep its CRDs and LICENSE in the cache."""
    go = shutil.which("go")
    if go is None:
        raise Unavailable(
            f"Kueue's CRDs are not cached in {cache_dir(version)} and `go` is not installed to fetch them"
        )
    folder = cache_dir(version)
    with tempfile.TemporaryDirectory(prefix="fjord-kueue-") as tmp:
        env = {
            **os.environ,
            "GOMODCACHE": str(Path(tmp) / "mod"),
            "GOPATH": str(Path(tmp) / "gopath"),
            "GOFLAGS": (os.environ.get("GOFLAGS", "") + " -modcacherw").strip(),
            "GO111MODULE": "on",
        }
        try:
            done = subprocess.run(
                [go, "mod", "download", "-json", f"{MODULE}@{version}"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"go mod download {MODULE}@{version} failed: {exc}") from None
        try:
            info = json.loads(done.stdout)
        except ValueError:
            info = {"Error": (done.stderr or done.stdout).strip()[:500]}
        if info.get("Error") or done.returncode != 0:
            raise Unavailable(f"go mod download {MODULE}@{version} failed: {info.get('Error') or done.stderr[:500]}")
        if expected_sum is not None and info.get("Sum") != expected_sum:
            raise Unavailable(f"{MODULE}@{version} has checksum {info.get('Sum')}, expected {expected_sum}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        prefix = f"{MODULE}@{version}/"
        with zipfile.ZipFile(info["Zip"]) as z:
            for kind in KINDS:
                name = f"kueue.x-k8s.io_{kind}.yaml"
                (staging / name).write_bytes(z.read(f"{prefix}{BASES}/{name}"))
            (staging / "LICENSE").write_bytes(z.read(f"{prefix}LICENSE"))
        (staging / "SOURCE").write_text(f"{MODULE}@{version} {info.get('Sum')} {BASES}\n", encoding="utf-8")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(staging), folder)
    return folder


if __name__ == "__main__":
    try:
        where = cache_dir() if all(f.is_file() for f in crd_files()) else None
    except Unavailable as exc:
        print(f"kueue CRDs: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"kueue CRDs: {MODULE}@{VERSION} in {where}")
