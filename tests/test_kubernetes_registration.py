"""fjord registers its Kubernetes objects and Helm releases without importing pulumi-kubernetes' typed classes
(their imports cost more than a dev plan). What reaches the engine must still be exactly what those classes
send: the same type token, inputs, property dependencies and provider version. Each test registers one of
the dev site's real objects both ways, under the plan's mocks, and compares the two requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from google.protobuf import json_format

from fjord.components.platform import KubernetesObject, Release
from fjord.plan.mocks import STACK_TYPE
from fjord.platform import ClusterPlatform, build_platform, object_key
from fjord.platform.build import Obj
from fjord.sizing.site import size_site
from fjord.spec.load import default_site, load_site

from .conftest import MONITOR

NOT_COMPARED = ("stackTrace", "sourcePosition", "parentStackTrace")
"""Where in the program the resource was made: differs by construction, not part of the resource."""


def dev_platform() -> ClusterPlatform:
    spec = load_site(default_site())
    return build_platform(spec, size_site(spec).clusters[0])


PLATFORM = dev_platform()


def request_of(make: Callable[[], pulumi.Resource], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The RegisterResource request `make` sends, as a dict, with the caller's source position left out."""
    sent: list[dict[str, Any]] = []
    register = MONITOR.RegisterResource

    def spy(request: Any) -> Any:
        sent.append(json_format.MessageToDict(request))
        return register(request)

    with monkeypatch.context() as m:
        m.setattr(MONITOR, "RegisterResource", spy)

        @pulumi.runtime.test
        def run() -> Any:
            return make().urn

        run()
    [request] = [r for r in sent if r["type"] != STACK_TYPE]  # the root stack registers with the first test
    return {k: v for k, v in request.items() if k not in NOT_COMPARED}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def typed_object(name: str, obj: Obj) -> pulumi.CustomResource:
    """The object through pulumi-kubernetes' typed class for its kind (CustomResource for CRDs' kinds)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    fields = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    module = {"": k8s.core, "storage.k8s.io": k8s.storage, "networking.k8s.io": k8s.networking}.get(group)
    if module is None:
        return k8s.apiextensions.CustomResource(
            name, api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], **fields
        )
    cls = getattr(getattr(module, version), obj["kind"])
    resource: pulumi.CustomResource = cls(name, metadata=obj["metadata"], **fields)
    return resource


def kinds() -> Iterator[Obj]:
    seen: set[str] = set()
    for obj in PLATFORM.manifests:
        if obj["kind"] not in seen:
            seen.add(obj["kind"])
            yield obj


@pytest.mark.parametrize("obj", list(kinds()), ids=lambda o: str(o["kind"]))
def test_objects_are_sent_as_the_typed_classes_send_them(obj: Obj, monkeypatch: pytest.MonkeyPatch) -> None:
    name = object_key(obj).lower().replace("/", "-")
    ours = request_of(lambda: KubernetesObject(name, obj, pulumi.ResourceOptions()), monkeypatch)
    typed = request_of(lambda: typed_object(name, obj), monkeypatch)
    assert ours["type"] == typed["type"]
    assert ours["version"] == typed["version"]
    # Some typed classes alias the kind's older API versions (StorageClass: storage.k8s.io/v1beta1), so that a
    # stack that registered the object under such a token adopts it. fjord has only ever registered these
    # objects under the token they have now, so it sends none; any other alias would be a difference.
    kind = typed["type"].rsplit(":", 1)[1]
    for alias in typed.pop("aliases", []):
        assert alias["spec"]["type"].endswith(f":{kind}")
        assert alias["spec"]["type"] != typed["type"]
    assert "aliases" not in ours
    assert ours == typed


@pytest.mark.parametrize("rel", PLATFORM.releases, ids=lambda r: r.name)
def test_releases_are_sent_as_the_typed_class_sends_them(rel: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = request_of(lambda: Release(rel.name, rel, pulumi.ResourceOptions()), monkeypatch)
    typed = request_of(
        lambda: k8s.helm.v3.Release(
            rel.name,
            name=rel.name,
            chart=rel.chart_name,
            version=rel.chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=rel.repository) if rel.repository else None,
            namespace=rel.namespace,
            create_namespace=False,
            values=rel.values,
        ),
        monkeypatch,
    )
    assert ours["type"] == "kubernetes:helm.sh/v3:Release"
    assert ours["object"]["values"] == typed["object"]["values"]
    assert ours == typed


def test_a_release_exposes_its_values_and_status_as_outputs() -> None:
    rel = PLATFORM.releases[0]
    got: list[Any] = []

    @pulumi.runtime.test
    def run() -> Any:
        release = Release(f"{rel.name}-outputs", rel, pulumi.ResourceOptions())
        return pulumi.Output.all(release.values, release.status).apply(got.append)

    run()
    assert got == [[rel.values, None]]
