"""Validation of what fjord generates for the Kubernetes platform against the official schemas.

- core objects: kubernetes-validate, strict, at the cluster's Kubernetes version;
- NVIDIA custom resources: the CRDs' openAPIV3Schema from ../shared/schemas, made strict (additionalProperties:
  false wherever properties are listed and unknown fields are not preserved);
- Helm values: every key path fjord sets must exist in the chart's values.yaml there;
- Kueue objects: Kueue's CRDs are not among the vendor schemas, so they are checked structurally against the
  fields of the kueue.x-k8s.io/v1beta1 API that fjord uses (strict as well); see KUEUE_SCHEMAS.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fjord.platform import ClusterPlatform, HelmRelease

REPO = Path(__file__).resolve().parents[1]


def schemas_dir() -> Path:
    """../shared/schemas next to the clone (or next to a folder above it); fail clearly when absent."""
    for folder in REPO.parents:
        candidate = folder / "shared" / "schemas"
        if candidate.is_dir():
            return candidate
    pytest.fail(f"vendor schemas not found: expected {REPO.parent / 'shared' / 'schemas'} (../shared/schemas)")


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


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema, from every CRD file of the vendor schemas."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(schemas_dir().glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                found[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return found


_KUEUE_META = {"type": "object", "required": ["name"]}
_QUANTITY = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|m)?$"}]
}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "additionalProperties": False,
}
KUEUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "ResourceFlavor": {
        "type": "object",
        "properties": {
            "nodeLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    },
    "ClusterQueue": {
        "type": "object",
        "required": ["resourceGroups"],
        "properties": {
            "namespaceSelector": _LABEL_SELECTOR,
            "queueingStrategy": {"enum": ["StrictFIFO", "BestEffortFIFO"]},
            "cohort": {"type": "string"},
            "resourceGroups": {
                "type": "array",
                "maxItems": 16,
                "items": {
                    "type": "object",
                    "required": ["coveredResources", "flavors"],
                    "properties": {
                        "coveredResources": {"type": "array", "items": {"type": "string"}, "maxItems": 64},
                        "flavors": {
                            "type": "array",
                            "maxItems": 64,
                            "items": {
                                "type": "object",
                                "required": ["name", "resources"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "resources": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "nominalQuota"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "nominalQuota": _QUANTITY,
                                                "borrowingLimit": _QUANTITY,
                                            },
                                            "additionalProperties": False,
                                        },
                                    },
                                },
                                "additionalProperties": False,
                            },
                        },
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "LocalQueue": {
        "type": "object",
        "required": ["clusterQueue"],
        "properties": {"clusterQueue": {"type": "string"}},
        "additionalProperties": False,
    },
}


def _kueue_schema(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kueue.x-k8s.io/v1beta1"},
            "kind": {"const": kind},
            "metadata": _KUEUE_META,
            "spec": KUEUE_SCHEMAS[kind],
        },
        "additionalProperties": False,
    }


@functools.cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = crd_schemas()[(api_version, kind)]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def validate_object(obj: dict[str, Any], kubernetes: str) -> str:
    """Validate one generated object; return which schema checked it. Raises on any error."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crd_schemas():
        _crd_validator(*key).validate(obj)
        return "crd"
    if obj["apiVersion"] == "kueue.x-k8s.io/v1beta1":
        jsonschema.validate(obj, _kueue_schema(obj["kind"]))
        # The object's metadata is still plain Kubernetes metadata: check it through a core object.
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, kubernetes, strict=True
        )
        return "kueue-structural"
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
