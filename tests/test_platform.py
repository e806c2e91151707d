"""The Kubernetes GPU platform as data: validated against the official schemas; tenancy, ownership, air gap."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fjord.platform import ClusterPlatform, build_platform, kubernetes_clusters, object_key
from fjord.platform.build import GPU_OPERATOR_IMAGES, NETWORK_OPERATOR_IMAGES
from fjord.sizing.site import size_site
from fjord.sizing.storage import tier_offers
from fjord.spec.errors import SiteError
from fjord.spec.load import load_site
from fjord.spec.models import Site
from fjord.spec.ownership import host_vars

from .conftest import stack_site
from .platform_schemas import chart_defaults, validate_object, validate_platform, validate_release

STACKS = ("dev", "uk", "narvik")
UPSTREAM_HOSTS = ("nvcr.io", "registry.k8s.io", "ghcr.io", "helm.ngc.nvidia.com", "docker.io", "quay.io")


def platforms(raw: dict[str, Any]) -> dict[str, ClusterPlatform]:
    site = load_site(raw)
    size = size_site(site)
    kube = set(kubernetes_clusters(site))
    return {c.name: build_platform(site, c) for c in size.clusters if c.name in kube}


def by_kind(p: ClusterPlatform, kind: str) -> list[dict[str, Any]]:
    return [o for o in p.manifests if o["kind"] == kind]


def find(p: ClusterPlatform, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    return next(
        o
        for o in p.manifests
        if o["kind"] == kind and o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
    )


@pytest.mark.parametrize("stack", STACKS)
def test_everything_generated_validates(stack: str) -> None:
    """Core objects against Kubernetes' own schema at the site's version (strict), NicClusterPolicy against the
    vendor CRD, Kueue objects structurally, Helm values against the charts' values.yaml and ClusterPolicy."""
    built = platforms(stack_site(stack))
    assert built
    for p in built.values():
        keys = [object_key(o) for o in p.manifests]
        assert len(keys) == len(set(keys)), "an object generated twice"
        counts = validate_platform(p)
        assert counts["kubernetes"] >= 8
        assert counts["crd"] == 1
        assert counts["kueue-crd"] == 1 + 2 * len(p.tenants)


def _typo_in(obj: dict[str, Any], path: tuple[str, ...], typo: str) -> dict[str, Any]:
    bad = copy.deepcopy(obj)
    holder = bad
    for key in path[:-1]:
        holder = holder[key]
    holder[typo] = holder.pop(path[-1])
    return bad


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "path", "typo"),
    [
        ("ResourceQuota", "gpu-quota", "tenant-sovereign-ai", ("spec", "hard"), "hrad"),
        ("LimitRange", "defaults", "tenant-sovereign-ai", ("spec", "limits"), "limit"),
        ("NetworkPolicy", "default-deny", "tenant-universities", ("spec", "podSelector"), "podSelecter"),
        ("Namespace", "tenant-universities", None, ("metadata", "labels"), "lables"),
        ("StorageClass", "vast", None, ("volumeBindingMode",), "volumeBindMode"),
        ("NicClusterPolicy", "nic-cluster-policy", None, ("spec", "rdmaSharedDevicePlugin", "image"), "imgae"),
        ("NicClusterPolicy", "nic-cluster-policy", None, ("spec", "secondaryNetwork", "ipoib"), "ipoIB"),
        ("ClusterQueue", "universities", None, ("spec", "namespaceSelector"), "namespaceSelecter"),
        ("LocalQueue", "default", "tenant-universities", ("spec", "clusterQueue"), "clusterqueue"),
    ],
)
def test_a_typo_in_a_generated_object_fails(
    kind: str, name: str, namespace: str | None, path: tuple[str, ...], typo: str
) -> None:
    p = platforms(stack_site("uk"))["b200"]
    good = find(p, kind, name, namespace)
    validate_object(good, p.kubernetes)
    bad = _typo_in(good, path, typo)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate_object(bad, p.kubernetes)


@pytest.mark.parametrize(
    ("release", "path", "typo"),
    [
        ("gpu-operator", ("driver", "enabled"), "enabeld"),
        ("gpu-operator", ("dcgmExporter", "serviceMonitor"), "servicemonitor"),
        ("network-operator", ("nfd", "deployNodeFeatureRules"), "deployNodeFeatureRule"),
    ],
)
def test_a_typo_in_helm_values_fails(release: str, path: tuple[str, ...], typo: str) -> None:
    p = platforms(stack_site("uk"))["b200"]
    rel = next(r for r in p.releases if r.name == release)
    validate_release(rel)
    bad = rel.__class__(**{**rel.__dict__, "values": _typo_in(rel.values, path, typo)})
    with pytest.raises(AssertionError, match=typo):
        validate_release(bad)


def test_a_wrong_type_in_clusterpolicy_values_fails() -> None:
    """A key that exists but with a value the ClusterPolicy CRD does not accept is caught too."""
    p = platforms(stack_site("uk"))["b200"]
    rel = next(r for r in p.releases if r.name == "gpu-operator")
    values = copy.deepcopy(rel.values)
    values["driver"]["enabled"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        validate_release(rel.__class__(**{**rel.__dict__, "values": values}))


def test_charts_are_pinned_releases() -> None:
    p = platforms(stack_site("uk"))["b200"]
    versions = {r.name: r.chart.version for r in p.releases}
    assert set(versions) == {"gpu-operator", "network-operator", "kueue"}
    for version in versions.values():
        assert version[0] in "v0123456789", version
        assert "devel" not in version
        assert "latest" not in version
    assert {r.name: r.repository for r in p.releases}["gpu-operator"] == "https://helm.ngc.nvidia.com/nvidia"
    assert next(r for r in p.releases if r.name == "kueue").chart_name.startswith("oci://registry.k8s.io/")


def test_tenant_quotas_match_the_spec() -> None:
    raw = stack_site("uk")
    p = platforms(raw)["b200"]
    quotas = {
        q["metadata"]["namespace"]: q["spec"]["hard"]["requests.nvidia.com/gpu"] for q in by_kind(p, "ResourceQuota")
    }
    assert quotas == {"tenant-sovereign-ai": "3072", "tenant-universities": "1024"}
    queues = {q["metadata"]["name"]: q for q in by_kind(p, "ClusterQueue")}
    for share in p.tenants:
        gpu = next(
            r
            for r in queues[share.tenant]["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
            if r["name"] == "nvidia.com/gpu"
        )
        assert gpu["nominalQuota"] == share.gpus
        assert queues[share.tenant]["spec"]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": share.namespace
        }
        local = find(p, "LocalQueue", "default", share.namespace)
        assert local["spec"]["clusterQueue"] == share.tenant


def test_owner_without_a_quota_gets_the_cluster() -> None:
    raw = stack_site("uk")
    raw["tenants"][1]["gpu_quotas"] = []  # sovereign-ai owns b200 and gives up its explicit quota
    p = platforms(raw)["b200"]
    assert {t.tenant: t.gpus for t in p.tenants} == {"universities": 1024, "sovereign-ai": 4096}


def test_tenant_isolation() -> None:
    p = platforms(stack_site("narvik"))["gb300-b"]
    assert [t.tenant for t in p.tenants] == ["research"]
    ns = find(p, "Namespace", "tenant-research")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.33"
    policies = {n["metadata"]["name"]: n["spec"] for n in by_kind(p, "NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = policies["allow-dns"]["egress"][0]
    assert {port["port"] for port in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert policies["allow-storage"]["egress"][0]["to"][0]["ipBlock"]["cidr"] == "10.2.0.0/16"
    limits = find(p, "LimitRange", "defaults", "tenant-research")["spec"]["limits"][0]
    assert limits["max"] == {"nvidia.com/gpu": "4"}  # an NVL72 compute tray holds 4 GPUs
    # Operator namespaces run privileged node agents; no tenant namespace does.
    privileged = {
        n["metadata"]["name"] for n in by_kind(p, "Namespace") if "privileged" in n["metadata"]["labels"].values()
    }
    assert privileged == {"gpu-operator", "nvidia-network-operator"}


@pytest.mark.parametrize("owner", ["host", "operator"])
def test_ownership_switch_flips_helm_values_and_ansible_vars_together(owner: str) -> None:
    raw = stack_site("dev")
    raw["clusters"][0]["gpu_stack"] = {"driver": owner, "container_toolkit": owner}
    p = platforms(raw)["h100"]
    values = next(r for r in p.releases if r.name == "gpu-operator").values
    assert values["driver"]["enabled"] is (owner == "operator")
    assert values["toolkit"]["enabled"] is (owner == "operator")
    assert p.host_vars == {"nvidia_driver_manage": owner == "host", "nvidia_container_toolkit_manage": owner == "host"}
    assert p.host_vars == host_vars(load_site(raw).clusters[0])
    for key, part in (("nvidia_driver_manage", "driver"), ("nvidia_container_toolkit_manage", "toolkit")):
        assert p.host_vars[key] is not values[part]["enabled"]  # exactly one side manages each part
    ncp = by_kind(p, "NicClusterPolicy")[0]["spec"]
    assert ("ofedDriver" in ncp) is (owner == "operator")
    validate_platform(p)


def test_driver_upgrades_follow_the_upgrade_policy() -> None:
    """uk's b200 (512 nodes, operator-owned driver) upgrades 5 % of its nodes at a time, GPU and NIC drivers alike."""
    p = platforms(stack_site("uk"))["b200"]
    driver = next(r for r in p.releases if r.name == "gpu-operator").values["driver"]
    assert driver["upgradePolicy"]["maxParallelUpgrades"] == 25
    assert driver["upgradePolicy"]["maxUnavailable"] == "5%"
    ofed = by_kind(p, "NicClusterPolicy")[0]["spec"]["ofedDriver"]
    assert ofed["upgradePolicy"]["maxParallelUpgrades"] == 25


def test_parts_switch_independently() -> None:
    raw = stack_site("dev")
    raw["clusters"][0]["gpu_stack"] = {"driver": "host", "container_toolkit": "operator"}
    p = platforms(raw)["h100"]
    values = next(r for r in p.releases if r.name == "gpu-operator").values
    assert (values["driver"]["enabled"], values["toolkit"]["enabled"]) == (False, True)
    assert p.host_vars == {"nvidia_driver_manage": True, "nvidia_container_toolkit_manage": False}


def test_operator_driver_needs_a_known_branch() -> None:
    raw = stack_site("dev")
    raw["clusters"][0]["gpu_stack"] = {"driver": "operator"}
    raw["software"]["driver_branch"] = 575
    with pytest.raises(SiteError) as info:
        platforms(raw)
    assert info.value.problems[0].path == "software.driver_branch"
    assert "allowed: 570, 580" in info.value.lines()[0]


def _strings(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, list | tuple):
        return [s for v in data for s in _strings(v)]
    return [data] if isinstance(data, str) else []


def test_air_gap_takes_every_chart_and_image_from_the_site() -> None:
    """narvik is air-gapped: no chart, image or package source points outside the site."""
    site = Site.model_validate(stack_site("narvik"))
    assert site.air_gap is not None
    raw = stack_site("narvik")
    raw["clusters"][2]["gpu_stack"] = {"driver": "operator", "container_toolkit": "operator"}
    for p in platforms(raw).values():
        texts = _strings(list(p.manifests)) + _strings([r.values for r in p.releases])
        texts += [r.chart_name for r in p.releases] + [r.repository or "" for r in p.releases]
        leaks = [t for t in texts if any(h in t for h in UPSTREAM_HOSTS)]
        assert leaks == [], leaks
        assert all((r.repository or r.chart_name).startswith(site.air_gap.charts) for r in p.releases)
        ncp = by_kind(p, "NicClusterPolicy")[0]["spec"]
        assert ncp["nvIpam"]["repository"] == "registry.narvik.fjord.example/nvidia/nvidia/mellanox"
        validate_platform(p)
    repo = find(platforms(raw)["gb300-a"], "ConfigMap", "fjord-driver-repo", "gpu-operator")
    assert "deb https://mirror.narvik.fjord.example/apt noble main universe" in repo["data"]["custom-repo.list"]


def test_without_air_gap_images_stay_upstream() -> None:
    p = platforms(stack_site("uk"))["b200"]
    values = next(r for r in p.releases if r.name == "gpu-operator").values
    assert "repository" not in values["driver"]
    assert by_kind(p, "NicClusterPolicy")[0]["spec"]["nvIpam"]["repository"] == "nvcr.io/nvidia/mellanox"


def _repositories(values: Any, path: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}" if path else key
            if key == "repository" and isinstance(value, str) and value:
                found[path] = value
            found |= _repositories(value, here)
    return found


def test_mirror_lists_cover_every_image_of_the_charts() -> None:
    """When a chart gains an image, the air-gap mirror list must learn it (else it would pull from outside)."""
    assert _repositories(chart_defaults("gpu-operator")) == dict(GPU_OPERATOR_IMAGES)
    network = _repositories(chart_defaults("network-operator"))
    ours = dict(NETWORK_OPERATOR_IMAGES)
    assert set(network) == set(ours)
    assert all(v.split("/")[0] == "nvcr.io" for v in network.values())


def test_dcgm_exporter_is_scraped() -> None:
    p = platforms(stack_site("dev"))["h100"]
    values = next(r for r in p.releases if r.name == "gpu-operator").values
    assert values["dcgmExporter"]["enabled"] is True
    assert values["dcgmExporter"]["annotations"]["prometheus.io/scrape"] == "true"
    scrape = yaml.safe_load(find(p, "ConfigMap", "dcgm-exporter-scrape", "gpu-operator")["data"]["scrape.yaml"])
    job = scrape["scrape_configs"][0]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["gpu-operator"]


def test_storage_classes_per_tier() -> None:
    p = platforms(stack_site("narvik"))["gb200-a"]
    classes = {c["metadata"]["name"]: c["provisioner"] for c in by_kind(p, "StorageClass")}
    assert classes == {"lustre": "nfs.csi.k8s.io", "block": "rbd.csi.ceph.com"}  # objects: S3, no class
    # The one default class is the one the Storage component offers as default (the first block tier).
    defaults = [
        c["metadata"]["name"]
        for c in by_kind(p, "StorageClass")
        if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    offers = [o for o in tier_offers(load_site(stack_site("narvik")).storage) if o.default]
    assert defaults == [o.storage_class for o in offers] == ["block"]


def test_rdma_on_infiniband_and_spectrum_x() -> None:
    raw = stack_site("dev")
    ib = by_kind(platforms(raw)["h100"], "NicClusterPolicy")[0]["spec"]
    assert "ipoib" in ib["secondaryNetwork"]
    assert json.loads(ib["rdmaSharedDevicePlugin"]["config"])["configList"][0]["selectors"]["linkTypes"] == [
        "infiniband"
    ]
    raw["fabrics"][0] |= {"technology": "spectrum-x", "switch": "SN5600"}
    eth = by_kind(platforms(raw)["h100"], "NicClusterPolicy")[0]["spec"]
    assert "ipoib" not in eth["secondaryNetwork"]
    assert json.loads(eth["rdmaSharedDevicePlugin"]["config"])["configList"][0]["selectors"]["linkTypes"] == ["ether"]


def test_slurm_clusters_get_no_platform() -> None:
    assert set(platforms(stack_site("narvik"))) == {"gb200-a", "gb300-a", "gb300-b"}
    assert set(platforms(stack_site("uk"))) == {"b200"}
