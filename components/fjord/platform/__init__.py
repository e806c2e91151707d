"""The Kubernetes GPU platform as plain data (pure: no Pulumi, no Kubernetes client)."""

from fjord.platform.build import (
    ClusterPlatform,
    HelmRelease,
    TenantShare,
    build_platform,
    kubernetes_clusters,
    object_key,
    release_for,
)

__all__ = [
    "ClusterPlatform",
    "HelmRelease",
    "TenantShare",
    "build_platform",
    "kubernetes_clusters",
    "object_key",
    "release_for",
]
