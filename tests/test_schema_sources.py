"""Where the schemas the platform tests validate against come from, and what happens when they are missing:
../shared/schemas (the NVIDIA operators' CRDs and chart values) and Kueue's CRDs (tests/kueue_crds.py).
Outside CI a missing source skips the tests that need it, with the reason; in CI it fails them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import kueue_crds
from .platform_schemas import KUEUE_API, kueue_schemas, missing, schemas_dir

CI_VARIABLES = ("FJORD_REQUIRE_INTEGRATION", "CI")


@pytest.fixture
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_a_clone_without_shared_skips_with_the_reason(tmp_path: Path, outside_ci: None) -> None:
    clone = tmp_path / "fjord"
    clone.mkdir()
    with pytest.raises(pytest.skip.Exception, match=r"vendor schemas not found: expected .*shared/schemas"):
        schemas_dir(clone)


@pytest.mark.parametrize(("name", "value"), [("FJORD_REQUIRE_INTEGRATION", "1"), ("CI", "true")])
def test_in_ci_a_missing_source_fails(
    tmp_path: Path, outside_ci: None, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pytest.fail.Exception, match="vendor schemas not found"):
        schemas_dir(tmp_path / "fjord")
    with pytest.raises(pytest.fail.Exception, match="required: FJORD_REQUIRE_INTEGRATION=1 or CI=true"):
        missing("something")


def test_a_clone_next_to_shared_finds_it(tmp_path: Path) -> None:
    (tmp_path / "shared" / "schemas").mkdir(parents=True)
    (tmp_path / "fjord").mkdir()
    assert schemas_dir(tmp_path / "fjord") == tmp_path / "shared" / "schemas"


def test_kueue_crds_without_go_or_cache_are_unavailable_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FJORD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `go` on it
    with pytest.raises(kueue_crds.Unavailable, match=r"not cached in .* and `go` is not installed"):
        kueue_crds.crd_files()


def test_kueue_crds_are_the_pinned_module_and_define_what_fjord_uses() -> None:
    schemas = kueue_schemas()
    for kind in ("ResourceFlavor", "ClusterQueue", "LocalQueue"):
        assert (KUEUE_API, kind) in schemas
        assert schemas[(KUEUE_API, kind)]["properties"]["spec"]["additionalProperties"] is False, "made strict"
    folder = kueue_crds.cache_dir()
    assert (folder / "SOURCE").read_text().split()[:2] == [f"{kueue_crds.MODULE}@{kueue_crds.VERSION}", kueue_crds.SUM]
    assert "Apache License" in (folder / "LICENSE").read_text()
    crd = yaml.safe_load((folder / "kueue.x-k8s.io_clusterqueues.yaml").read_text())
    assert crd["spec"]["group"] == "kueue.x-k8s.io"
    assert "v1beta1" in [v["name"] for v in crd["spec"]["versions"] if v["served"]]
