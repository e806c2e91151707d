"""Platform: the Kubernetes GPU platform of one cluster, registered with pulumi-kubernetes.

What is registered is exactly what `fjord.platform.build_platform` computed (and what `fjord render` writes):
namespaces first, then the Helm releases of the operators (pinned chart versions), then every other object,
custom resources after the release that installs their CRD. One Kubernetes provider per cluster; its
kubeconfig is the Pulumi secret `fjord:kubeconfig-<cluster>` or, when unset, the context
`fjord-<site>-<cluster>` of the operator's kubeconfig (never the current context, so a plan cannot land on
the wrong cluster).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from fjord.components._config import credential
from fjord.components._outputs import plain
from fjord.platform import ClusterPlatform, HelmRelease, object_key, release_for
from fjord.platform.build import Obj


def kubeconfig_key(cluster: str) -> str:
    """The Pulumi secret config key (namespace `fjord`) holding the cluster's kubeconfig."""
    return f"kubeconfig-{cluster}"


@dataclass(frozen=True)
class PlatformArgs:
    platform: ClusterPlatform
    """The cluster's platform as plain data (`fjord.platform.build_platform`)."""
    protect_namespaces: bool = True
    """Protect the namespaces (deleting one deletes every tenant object in it); False only for a cluster the
    stack's `fjord:allowRemove` lists."""


def _resource_name(prefix: str, obj: Obj) -> str:
    return f"{prefix}-{object_key(obj).lower().replace('/', '-')}"


_K8S_SDK = importlib.metadata.version("pulumi_kubernetes")
"""The pulumi-kubernetes release whose provider plugin the objects ask for, as its typed classes do."""


def _sdk_options(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """`opts` asking for that provider plugin release, as a typed class's defaults do (`opts` wins)."""
    return pulumi.ResourceOptions.merge(pulumi.ResourceOptions(version=_K8S_SDK), opts)


class KubernetesObject(pulumi.CustomResource):
    """One Kubernetes object, registered with the pulumi-kubernetes provider from its manifest as it is.

    The type token is the one pulumi-kubernetes' typed classes use (`kubernetes:core/v1:Namespace`,
    `kubernetes:networking.k8s.io/v1:NetworkPolicy`, `kubernetes:nvidia.com/v1alpha1:NicClusterPolicy`), and
    so are the inputs (`apiVersion`, `kind`, `metadata`, then the object's own fields) and the provider
    version, so the engine and the provider see the same resource. The typed classes are not imported:
    the SDK's core/v1 input types alone take ~0.9 s to import, more than a whole dev plan.
    """

    def __init__(self, name: str, obj: Obj, opts: pulumi.ResourceOptions) -> None:
        group, _, version = obj["apiVersion"].rpartition("/")
        token = f"kubernetes:{group or 'core'}/{version}:{obj['kind']}"
        super().__init__(token, name, dict(obj), _sdk_options(opts))


class Release(pulumi.CustomResource):
    """One Helm release, registered as pulumi-kubernetes' `kubernetes:helm.sh/v3:Release` registers it.

    The same type token, inputs (camelCase, `compat: "true"` as the typed class always sets it, the values
    as they are) and provider version, so the engine and the provider see the same resource
    (`tests/test_kubernetes_registration.py` compares the two requests). The typed class is not imported:
    importing `pulumi_kubernetes.helm.v3` imports its YAML and Chart support and `requests` with them, ~30 ms,
    a tenth of a dev plan.
    """

    if TYPE_CHECKING:  # For type checkers only: Pulumi re-reads class annotations for every instance.
        values: pulumi.Output[dict[str, Any]]
        status: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, rel: HelmRelease, opts: pulumi.ResourceOptions) -> None:
        props: dict[str, Any] = {
            "chart": rel.chart_name,
            "compat": "true",
            "createNamespace": False,
            "name": rel.name,
            "namespace": rel.namespace,
            "repositoryOpts": {"repo": rel.repository} if rel.repository else None,
            "values": rel.values,
            "version": rel.chart.version,
            "status": None,  # an output only: the release's state once installed
        }
        super().__init__("kubernetes:helm.sh/v3:Release", name, props, _sdk_options(opts))


_OWN_KINDS = frozenset({"Namespace", "ConfigMap", "ResourceQuota", "LimitRange", "NetworkPolicy", "StorageClass"})


def _register(name: str, obj: Obj, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """A core object fjord writes, or a custom resource whose CRD one of the releases installs."""
    if obj["kind"] not in _OWN_KINDS and release_for(obj) is None:
        raise ValueError(f"{name}: no resource type for {obj['apiVersion']} {obj['kind']}")
    return KubernetesObject(name, obj, opts)


class Platform(pulumi.ComponentResource):
    """Operators, storage classes, queues and tenant isolation on one Kubernetes GPU cluster."""

    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None
    """The cluster's kubeconfig, a Pulumi secret (None: the context `fjord-<site>-<cluster>` is used)."""
    namespaces: dict[str, KubernetesObject]
    releases: dict[str, Release]
    objects: dict[str, pulumi.CustomResource]
    tenant_quotas: pulumi.Output[dict[str, int]]
    charts: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:Platform", name, None, opts)
        p = args.platform
        self.kubeconfig = kubeconfig = credential(kubeconfig_key(p.cluster))
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=kubeconfig,
            context=None if kubeconfig is not None else f"fjord-{p.site}-{p.cluster}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=self.provider, protect=False)
        guarded = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=args.protect_namespaces))
        self.namespaces = {
            ns["metadata"]["name"]: KubernetesObject(_resource_name(name, ns), ns, guarded) for ns in p.namespaces
        }
        self.releases = {}
        for rel in p.releases:
            self.releases[rel.name] = Release(
                f"{name}-{rel.name}",
                rel,
                pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(depends_on=[self.namespaces[rel.namespace]])
                ),
            )
        self.objects = {}
        for obj in p.objects:
            deps: list[pulumi.Resource] = []
            ns = obj["metadata"].get("namespace")
            if ns is not None:
                deps.append(self.namespaces[ns])
            owner = release_for(obj)
            if owner is not None:
                deps.append(self.releases[owner])
            opts_ = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=deps))
            self.objects[object_key(obj)] = _register(_resource_name(name, obj), obj, opts_)
        self.tenant_quotas = plain({t.tenant: t.gpus for t in p.tenants})
        self.charts = plain({r.name: r.chart.version for r in p.releases})
        outputs: dict[str, Any] = {
            "kubernetes": p.kubernetes,
            "tenant_quotas": self.tenant_quotas,
            "charts": self.charts,
            "host_vars": p.host_vars,
            "objects": len(p.manifests),
        }
        self.register_outputs(outputs)
