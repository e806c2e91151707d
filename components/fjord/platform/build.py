"""The Kubernetes GPU platform of one cluster as plain data: namespaces, Helm releases with their values, and
every other object fjord applies (NicClusterPolicy, storage classes, Kueue queues, tenant isolation).

Pure: the site model in, dicts out. The Pulumi component (`fjord.components.platform`) registers exactly
these, `fjord render` writes them to files, and the tests validate them against the official schemas.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from fjord.platform.charts import (
    DOCA_DRIVER_VERSION,
    DRIVER_RELEASES,
    GPU_OPERATOR,
    KUEUE,
    KUEUE_IMAGE,
    MELLANOX_IMAGES,
    NETWORK_COMPONENT_TAG,
    NETWORK_OPERATOR,
    ChartRef,
    chart_source,
    mirror,
)
from fjord.sizing.site import ClusterSize
from fjord.sizing.storage import tier_offers
from fjord.spec.models import AirGap, Cluster, Site
from fjord.spec.ownership import host_vars, operator_manages

Obj = dict[str, Any]

GPU = "nvidia.com/gpu"
MANAGED = {"app.kubernetes.io/managed-by": "fjord"}
GPU_OPERATOR_NS = "gpu-operator"
NETWORK_OPERATOR_NS = "nvidia-network-operator"
KUEUE_NS = "kueue-system"
DCGM_PORT = 9400

CPU_PER_GPU = 28
"""Host cores a tenant's queue admits per GPU of quota (DGX H100: 224 cores for 8 GPUs; GB200 tray: 144 for 4)."""
MEMORY_GIB_PER_GPU = 240
"""Host memory a tenant's queue admits per GPU of quota, GiB (DGX H100: 2 TiB for 8; GB200 tray: 960 GB for 4)."""

GPU_OPERATOR_IMAGES: tuple[tuple[str, str], ...] = (
    ("validator", "nvcr.io/nvidia"),
    ("operator", "nvcr.io/nvidia"),
    ("driver", "nvcr.io/nvidia"),
    ("driver.manager", "nvcr.io/nvidia/cloud-native"),
    ("toolkit", "nvcr.io/nvidia/k8s"),
    ("devicePlugin", "nvcr.io/nvidia"),
    ("dcgm", "nvcr.io/nvidia/cloud-native"),
    ("dcgmExporter", "nvcr.io/nvidia/k8s"),
    ("gfd", "nvcr.io/nvidia"),
    ("migManager", "nvcr.io/nvidia/cloud-native"),
    ("nodeStatusExporter", "nvcr.io/nvidia"),
    ("gds", "nvcr.io/nvidia/cloud-native"),
    ("gdrcopy", "nvcr.io/nvidia/cloud-native"),
    ("vgpuManager.driverManager", "nvcr.io/nvidia/cloud-native"),
    ("vgpuDeviceManager", "nvcr.io/nvidia/cloud-native"),
    ("vfioManager", "nvcr.io/nvidia/cloud-native"),
    ("vfioManager.driverManager", "nvcr.io/nvidia/cloud-native"),
    ("sandboxDevicePlugin", "nvcr.io/nvidia"),
    ("kataSandboxDevicePlugin", "nvcr.io/nvidia/cloud-native"),
    ("ccManager", "nvcr.io/nvidia/cloud-native"),
    ("draDriver", "nvcr.io/nvidia"),
)
"""Every image repository of the GPU Operator chart (dotted value path, upstream): air-gapped sites mirror all."""

NETWORK_OPERATOR_IMAGES: tuple[tuple[str, str], ...] = (
    ("operator", MELLANOX_IMAGES),
    ("operator.ofedDriver.initContainer", MELLANOX_IMAGES),
    ("node-feature-discovery.image", MELLANOX_IMAGES + "/node-feature-discovery"),
    ("maintenance-operator-chart.operator.image", MELLANOX_IMAGES),
)
"""Every image repository of the Network Operator chart that fjord enables (SR-IOV stays off)."""

STORAGE_PROVISIONERS = {"parallel-fs": "nfs.csi.k8s.io", "block": "rbd.csi.ceph.com"}
"""CSI driver per storage kind: the parallel file system's NFS export (csi-driver-nfs), Ceph RBD for block.
Object tiers are reached over S3, not as volumes, and get no storage class."""


@dataclass(frozen=True)
class HelmRelease:
    """One Helm release: where the chart comes from, its pinned version, and the values fjord sets."""

    name: str
    namespace: str
    chart: ChartRef
    chart_name: str
    """As `helm install` takes it: the chart's name, or a full oci:// reference."""
    repository: str | None
    values: Obj
    schema: str | None
    """Folder under ../shared/schemas whose values.yaml holds every key fjord sets (None: no vendor file)."""


@dataclass(frozen=True)
class TenantShare:
    tenant: str
    namespace: str
    gpus: int


@dataclass(frozen=True)
class ClusterPlatform:
    """What fjord applies to one Kubernetes GPU cluster."""

    site: str
    cluster: str
    kubernetes: str
    """The cluster's Kubernetes minor release (`software.kubernetes`), the schema everything is checked against."""
    tenants: tuple[TenantShare, ...]
    releases: tuple[HelmRelease, ...]
    namespaces: tuple[Obj, ...]
    objects: tuple[Obj, ...]
    """Everything else, in apply order; custom resources after the release that installs their CRD."""
    host_vars: dict[str, bool] = field(default_factory=dict)
    """The Ansible side of the GPU stack ownership switch (`fjord.spec.ownership.host_vars`)."""

    @property
    def manifests(self) -> tuple[Obj, ...]:
        return self.namespaces + self.objects


CRD_RELEASE = {"mellanox.com/v1alpha1": NETWORK_OPERATOR.name, "kueue.x-k8s.io/v1beta1": KUEUE.name}


def release_for(obj: Obj) -> str | None:
    """The Helm release whose chart installs the CRD of this object (it must be applied after it)."""
    return CRD_RELEASE.get(obj["apiVersion"])


def object_key(obj: Obj) -> str:
    """A name unique within a cluster: kind, namespace and name."""
    meta = obj["metadata"]
    return "/".join(p for p in (obj["kind"], meta.get("namespace", ""), meta["name"]) if p)


def _set(values: Obj, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        values = values.setdefault(part, {})
    values[leaf] = value


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {**MANAGED, **(labels or {})}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _namespace(name: str, pod_security: str, kubernetes: str, labels: dict[str, str] | None = None) -> Obj:
    psa = {
        f"pod-security.kubernetes.io/{mode}{suffix}": value
        for mode in ("enforce", "audit", "warn")
        for suffix, value in (("", pod_security), ("-version", f"v{kubernetes}"))
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels={**psa, **(labels or {})})}


def tenant_namespace(tenant: str) -> str:
    return f"tenant-{tenant}"


def tenant_shares(site: Site, cluster: ClusterSize) -> tuple[TenantShare, ...]:
    """Tenants with GPUs on this cluster: every tenant with a quota here, and the cluster's owning tenant.

    The owner without a quota of its own may use the whole cluster.
    """
    shares = {t.name: q.gpus for t in site.tenants for q in t.gpu_quotas if q.cluster == cluster.name}
    shares.setdefault(cluster.tenant, cluster.gpus)
    return tuple(TenantShare(t, tenant_namespace(t), gpus) for t, gpus in shares.items())


def upgrade_batch(cluster: Cluster, nodes: int) -> int:
    """Nodes upgraded at once: the cluster's `upgrade.batch_percent` of its nodes, at least one."""
    return max(1, nodes * cluster.upgrade.batch_percent // 100)


def gpu_operator_values(site: Site, cluster: Cluster, nodes: int, air_gap: AirGap | None) -> Obj:
    """GPU Operator values: who owns driver and toolkit, rolling upgrades, DCGM scrape, mirrored images."""
    manages = operator_manages(cluster)
    batch = f"{cluster.upgrade.batch_percent}%"
    values: Obj = {
        # One node feature discovery per cluster: the Network Operator's (it labels GPUs and NICs alike).
        "nfd": {"enabled": False},
        "cdi": {"enabled": True},
        "driver": {"enabled": manages["driver"]},
        "toolkit": {"enabled": manages["container_toolkit"]},
        "daemonsets": {"rollingUpdate": {"maxUnavailable": batch}},
        "dcgmExporter": {
            "enabled": True,
            # Scraped through annotations (works with any Prometheus, no Prometheus Operator CRD needed).
            "serviceMonitor": {"enabled": False},
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(DCGM_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
    }
    if manages["driver"]:
        # Validation (the Site model) rejects an operator-owned driver of a branch with no pinned release.
        branch = site.software.driver_branch
        values["driver"] |= {
            "version": DRIVER_RELEASES[branch],
            # GPUDirect RDMA (nvidia-peermem) against the DOCA-OFED driver the Network Operator deploys.
            "rdma": {"enabled": True, "useHostMofed": False},
            "upgradePolicy": {
                "autoUpgrade": True,
                "maxParallelUpgrades": upgrade_batch(cluster, nodes),
                "maxUnavailable": batch,
            },
        }
        if air_gap is not None:
            values["driver"]["repoConfig"] = {"configMapName": DRIVER_REPO_CONFIGMAP}
    if cluster.gpu.rack_scale:
        # Multi-node NVLink (NVL72): workloads spanning a rack's trays get a ComputeDomain, for which the NVIDIA DRA
        # driver runs IMEX in pods (the host IMEX service stays off on Kubernetes). In this chart the DRA driver
        # comes with the GPUCluster CR, which replaces the ClusterPolicy (the two must not both exist).
        values["clusterPolicy"] = {"deployCR": False}
        values["gpuCluster"] = {"deployCR": True}
        values["draDriver"] = {"computeDomains": {"enabled": True}}
        if air_gap is not None:
            values["draDriver"]["repository"] = mirror("nvcr.io/nvidia", air_gap)
    if air_gap is not None:
        for path, upstream in GPU_OPERATOR_IMAGES:
            _set(values, f"{path}.repository", mirror(upstream, air_gap))
    return values


DRIVER_REPO_CONFIGMAP = "fjord-driver-repo"


def network_operator_values(air_gap: AirGap | None) -> Obj:
    values: Obj = {"nfd": {"enabled": True, "deployNodeFeatureRules": True}}
    if air_gap is not None:
        for path, upstream in NETWORK_OPERATOR_IMAGES:
            _set(values, f"{path}.repository", mirror(upstream, air_gap))
    return values


def kueue_values(air_gap: AirGap | None) -> Obj:
    if air_gap is None:
        return {}
    return {"controllerManager": {"manager": {"image": {"repository": mirror(KUEUE_IMAGE, air_gap)}}}}


def _release(chart: ChartRef, namespace: str, values: Obj, schema: str | None, air_gap: AirGap | None) -> HelmRelease:
    name, repo = chart_source(chart, air_gap)
    return HelmRelease(chart.name, namespace, chart, name, repo, values, schema)


def _component(image: str, air_gap: AirGap | None, version: str = NETWORK_COMPONENT_TAG) -> Obj:
    return {"image": image, "repository": mirror(MELLANOX_IMAGES, air_gap), "version": version}


def nic_cluster_policy(site: Site, cluster: Cluster, nodes: int, air_gap: AirGap | None) -> Obj:
    """RDMA over the compute fabric: shared RDMA devices for every pod, multus + CNI plugins, IPoIB on InfiniBand,
    nv-ipam; and the DOCA-OFED driver where the operators own the drivers."""
    infiniband = site.fabric(cluster.compute_fabric).technology.startswith("infiniband")
    link = "infiniband" if infiniband else "ether"
    rdma_config = {
        "configList": [
            {
                "resourceName": "rdma_shared_device_ib" if infiniband else "rdma_shared_device_eth",
                "rdmaHcaMax": 63,
                "selectors": {"vendors": ["15b3"], "linkTypes": [link]},
            }
        ]
    }
    secondary: Obj = {
        "cniPlugins": _component("plugins", air_gap),
        "multus": _component("multus-cni", air_gap),
    }
    if infiniband:
        secondary["ipoib"] = _component("ipoib-cni", air_gap)
    spec: Obj = {
        "rdmaSharedDevicePlugin": {
            **_component("k8s-rdma-shared-dev-plugin", air_gap),
            "config": json.dumps(rdma_config, indent=2),
        },
        "secondaryNetwork": secondary,
        "nvIpam": {**_component("nvidia-k8s-ipam", air_gap), "enableWebhook": False},
    }
    if operator_manages(cluster)["driver"]:
        spec["ofedDriver"] = {
            **_component("doca-driver", air_gap, DOCA_DRIVER_VERSION),
            "upgradePolicy": {
                "autoUpgrade": True,
                "maxParallelUpgrades": upgrade_batch(cluster, nodes),
                "drain": {"enable": True, "force": True, "deleteEmptyDir": True, "timeoutSeconds": 300},
            },
        }
    return {
        "apiVersion": "mellanox.com/v1alpha1",
        "kind": "NicClusterPolicy",
        "metadata": _meta("nic-cluster-policy"),
        "spec": spec,
    }


def storage_classes(site: Site) -> list[Obj]:
    """A StorageClass per file or block tier the site offers (`fjord.sizing.storage`, also the Storage output)."""
    tiers = {t.name: t for t in site.storage}
    classes: list[Obj] = []
    for offer in tier_offers(site.storage):
        provisioner = STORAGE_PROVISIONERS.get(offer.kind)
        if provisioner is None or offer.storage_class is None:
            continue
        tier = tiers[offer.name]
        host = urlparse(tier.endpoint).hostname if tier.endpoint else None
        params = (
            {"server": host or f"{tier.name}.storage.{site.name}", "share": f"/{tier.name}"}
            if tier.kind == "parallel-fs"
            else {"clusterID": site.name, "pool": tier.name, "imageFeatures": "layering"}
        )
        meta = _meta(offer.storage_class, labels={"fjord.io/storage-kind": tier.kind})
        if offer.default:
            meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
        classes.append(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": meta,
                "provisioner": provisioner,
                "parameters": params,
                "reclaimPolicy": "Retain",
                "allowVolumeExpansion": True,
                "volumeBindingMode": "WaitForFirstConsumer" if tier.kind == "block" else "Immediate",
            }
        )
    return classes


def tenant_objects(site: Site, cluster: ClusterSize, share: TenantShare, flavor: str) -> list[Obj]:
    """Quota, defaults and network isolation of a tenant's namespace, and its Kueue queues."""
    ns = share.namespace
    gpus_per_node = site.cluster(cluster.name).gpu.gpus_per_node
    dns_port = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta("gpu-quota", ns),
            "spec": {"hard": {f"requests.{GPU}": str(share.gpus)}},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta("defaults", ns),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": {"cpu": "1", "memory": "4Gi"},
                        "default": {"memory": "4Gi"},
                        "max": {GPU: str(gpus_per_node)},
                    }
                ]
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("default-deny", ns),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("allow-dns", ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": dns_port,
                    }
                ],
            },
        },
        {
            # Distributed jobs talk among their own pods (rendezvous, NCCL bootstrap); RDMA traffic runs on the
            # secondary network, outside these policies.
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("allow-same-namespace", ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"podSelector": {}}]}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("allow-storage", ns),
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": str(site.ip_plan.storage)}}]}],
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "ClusterQueue",
            "metadata": _meta(share.tenant),
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "queueingStrategy": "BestEffortFIFO",
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory", GPU],
                        "flavors": [
                            {
                                "name": flavor,
                                "resources": [
                                    {"name": "cpu", "nominalQuota": share.gpus * CPU_PER_GPU},
                                    {"name": "memory", "nominalQuota": f"{share.gpus * MEMORY_GIB_PER_GPU}Gi"},
                                    {"name": GPU, "nominalQuota": share.gpus},
                                ],
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": "kueue.x-k8s.io/v1beta1",
            "kind": "LocalQueue",
            "metadata": _meta("default", ns),
            "spec": {"clusterQueue": share.tenant},
        },
    ]


def kubernetes_clusters(site: Site) -> list[str]:
    return [c.name for c in site.clusters if c.scheduler == "kubernetes"]


def build_platform(site: Site, cluster: ClusterSize) -> ClusterPlatform:
    """Everything fjord applies to one Kubernetes GPU cluster of the site."""
    spec = site.cluster(cluster.name)
    if spec.scheduler != "kubernetes":
        raise ValueError(f"cluster {cluster.name!r} is scheduled by {spec.scheduler}, not Kubernetes")
    k8s = site.software.kubernetes
    air_gap = site.air_gap
    shares = tenant_shares(site, cluster)
    namespaces = [
        _namespace(GPU_OPERATOR_NS, "privileged", k8s),
        _namespace(NETWORK_OPERATOR_NS, "privileged", k8s),
        _namespace(KUEUE_NS, "baseline", k8s),
        *(_namespace(s.namespace, "restricted", k8s, {"fjord.io/tenant": s.tenant}) for s in shares),
    ]
    releases = (
        _release(
            GPU_OPERATOR,
            GPU_OPERATOR_NS,
            gpu_operator_values(site, spec, cluster.nodes, air_gap),
            "gpu-operator",
            air_gap,
        ),
        _release(NETWORK_OPERATOR, NETWORK_OPERATOR_NS, network_operator_values(air_gap), "network-operator", air_gap),
        _release(KUEUE, KUEUE_NS, kueue_values(air_gap), None, air_gap),
    )
    flavor = spec.sku.lower()
    objects: list[Obj] = []
    if air_gap is not None and operator_manages(spec)["driver"]:
        objects.append(driver_repo_configmap(site, air_gap))
    objects += [dcgm_scrape_config(), nic_cluster_policy(site, spec, cluster.nodes, air_gap), *storage_classes(site)]
    objects.append(
        {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor", "metadata": _meta(flavor), "spec": {}}
    )
    for share in shares:
        objects += tenant_objects(site, cluster, share, flavor)
    return ClusterPlatform(
        site=site.name,
        cluster=cluster.name,
        kubernetes=k8s,
        tenants=shares,
        releases=releases,
        namespaces=tuple(namespaces),
        objects=tuple(objects),
        host_vars=host_vars(spec),
    )


def dcgm_scrape_config() -> Obj:
    """The Prometheus scrape job for the DCGM exporter, for the site's Prometheus to include.

    A plain `kubernetes_sd_configs` job on the exporter's annotated pods works with any Prometheus; a
    ServiceMonitor would need the Prometheus Operator's CRD on every cluster.
    """
    job = {
        "job_name": "dcgm-exporter",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [GPU_OPERATOR_NS]}}],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "instance"},
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("dcgm-exporter-scrape", GPU_OPERATOR_NS, {"fjord.io/prometheus-scrape": "true"}),
        "data": {"scrape.yaml": json.dumps({"scrape_configs": [job]}, indent=2)},
    }


def driver_repo_configmap(site: Site, air_gap: AirGap) -> Obj:
    """The package sources the GPU Operator's driver container uses on an air-gapped site (its mirror)."""
    codename = {"ubuntu-22.04": "jammy", "ubuntu-24.04": "noble", "debian-12": "bookworm"}[site.software.os]
    sources = (
        f"deb {air_gap.packages} {codename} main universe\ndeb {air_gap.packages} {codename}-updates main universe\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(DRIVER_REPO_CONFIGMAP, GPU_OPERATOR_NS),
        "data": {"custom-repo.list": sources},
    }
