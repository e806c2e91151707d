"""Validation of what fjord generates for the Kubernetes platform against the official schemas.

- core objects: kubernetes-validate, strict, at the cluster's Kubernetes version;
- NVIDIA custom resources: the CRDs' openAPIV3Schema from ../shared/schemas, made strict (additionalProperties:
  false wherever properties are listed and unknown fields are not preserved);
- Kueue objects (ResourceFlavor, ClusterQueue, LocalQueue): Kueue's own CRDs, made strict the same way; they
  come from the `sigs.k8s.io/kueue` Go module into a cache (tests/kueue_crds.py);
- Helm values: every key path fjord sets must exist in the chart's values.yaml there.

Where the vendor schemas or Kueue's CRDs are missing (a clone without ../shared, a machine without `go`), the
tests that need them skip with the reason; in CI (FJORD_REQUIRE_INTEGRATION=1 or CI=true) they fail instead.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fjord.platform import ClusterPlatform, HelmRelease

from . import kueue_crds

REPO = Path(__file__).resolve().parents[1]
KUEUE_API = "kueue.x-k8s.io/v1beta1"


def integration_required() -> bool:
    """CI: what the tests need must be there (FJORD_REQUIRE_INTEGRATION=1, or CI=true as CI services set)."""
    return os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1" or os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> NoReturn:
    """Skip the test with `reason`, or fail it in CI."""
    if integration_required():
        pytest.fail(f"{reason} (required: FJORD_REQUIRE_INTEGRATION=1 or CI=true)")
    pytest.skip(reason)


def schemas_dir(repo: Path = REPO) -> Path:
    """../shared/schemas next to the clone (or next to a folder above it); skip (fail in CI) when absent."""
    for folder in repo.parents:
        candidate = folder / "shared" / "schemas"
        if candidate.is_dir():
            return candidate
    missing(f"vendor schemas not found: expected {repo.parent / 'shared' / 'schemas'} (../shared/schemas)")


def strict(schema: Any) -> Any:
    """A copy of a CRD schema that rejects unknown fields, as the API server's pruning would drop them."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if k != "enum" and k != "default" else v for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def without_required(schema: Any) -> Any:
    if isinstance(schema, list):
        return [without_required(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: without_required(v) for k, v in schema.items() if k != "required"}


def _crds(paths: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema of every CRD version in these files."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                found[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return found


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from every CRD file of the vendor schemas."""
    return _crds(sorted(schemas_dir().glob("*/*.yaml")))


_KUEUE_UNAVAILABLE: list[str] = []


@functools.cache
def _kueue_crds() -> dict[tuple[str, str], dict[str, Any]]:
    return _crds(kueue_crds.crd_files())


def kueue_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema from Kueue's own CRDs; skip (fail in CI) without them."""
    if not _KUEUE_UNAVAILABLE:
        try:
            return _kueue_crds()
        except kueue_crds.Unavailable as exc:
            _KUEUE_UNAVAILABLE.append(str(exc))  # fetch once per run, not once per test
    missing(_KUEUE_UNAVAILABLE[0])


@functools.cache
def _validator(source: str, api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schemas = kueue_schemas() if source == "kueue-crd" else crd_schemas()
    schema = schemas[(api_version, kind)]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def validate_object(obj: dict[str, Any], kubernetes: str) -> str:
    """Validate one generated object; return which schema checked it. Raises on any error."""
    key = (obj["apiVersion"], obj["kind"])
    if obj["apiVersion"].startswith("kueue.x-k8s.io/"):
        if key not in kueue_schemas():
            raise AssertionError(f"Kueue's CRDs define no {key[1]} in {key[0]}")
        _validator("kueue-crd", *key).validate(obj)
        # The object's metadata is plain Kubernetes metadata (a CRD schema leaves it open): check it too.
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, kubernetes, strict=True
        )
        return "kueue-crd"
    if key in crd_schemas():
        _validator("crd", *key).validate(obj)
        return "crd"
    kubernetes_validate.validate(obj, kubernetes, strict=True)
    return "kubernetes"


def unknown_value_paths(values: Any, defaults: Any, path: str = "") -> list[str]:
    """Key paths set in `values` that the chart's values.yaml does not have (an empty map takes any key)."""
    if not isinstance(values, dict):
        return []
    if defaults == {}:
        return []
    if not isinstance(defaults, dict):
        return [path or "."]
    missing: list[str] = []
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        if key not in defaults:
            missing.append(here)
        elif isinstance(value, dict) and value:
            missing += unknown_value_paths(value, defaults[key], here)
    return missing


@functools.cache
def chart_defaults(schema: str) -> dict[str, Any]:
    data = yaml.safe_load((schemas_dir() / schema / "values.yaml").read_text())
    assert isinstance(data, dict)
    return data


def validate_release(release: HelmRelease) -> None:
    """Every value key fjord sets exists in the chart; the GPU Operator's operand sections (which the chart
    copies into the ClusterPolicy spec) also satisfy the ClusterPolicy CRD schema."""
    if release.schema is None:
        return
    missing = unknown_value_paths(release.values, chart_defaults(release.schema))
    if missing:
        raise AssertionError(f"{release.name}: values not in the chart's values.yaml: {', '.join(missing)}")
    if release.schema == "gpu-operator":
        validator = _operand_validator()
        operands = {k: v for k, v in release.values.items() if k in validator.schema["properties"] and k != "operator"}
        validator.validate(copy.deepcopy(operands))


@functools.cache
def _operand_validator() -> jsonschema.protocols.Validator:
    """The ClusterPolicy spec schema, strict, without `required` (the chart's defaults fill the rest)."""
    cp = crd_schemas()[("nvidia.com/v1", "ClusterPolicy")]
    schema = without_required(cp["properties"]["spec"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate_platform(platform: ClusterPlatform) -> dict[str, int]:
    """Validate everything of one cluster's platform; return how many objects each schema checked."""
    counts: dict[str, int] = {}
    for obj in platform.manifests:
        how = validate_object(obj, platform.kubernetes)
        counts[how] = counts.get(how, 0) + 1
    for release in platform.releases:
        validate_release(release)
    return counts
