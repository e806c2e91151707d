"""NVL72 racks as NVLink domains: IMEX node lists and config, Kubernetes labels, GPU Operator ComputeDomains."""

from __future__ import annotations

import re
from pathlib import Path

from fjord.hosts import build_inventory
from fjord.hosts.nvlink import DOMAIN_LABEL, IMEX_OPTIONS, imex_config, nvlink_domains
from fjord.platform.build import build_platform
from fjord.sizing.site import SiteSize, size_site
from fjord.spec.load import load_site, read_stack
from fjord.spec.models import Site
from tests.platform_schemas import validate_release

STACKS = Path(__file__).resolve().parents[1] / "stacks"
IMEX_DOCUMENTED = {"DAEMONIZE", "BIND_INTERFACE_IP", "SERVER_PORT", "IMEX_NODE_CONFIG_FILE", "NETWORK_INTERFACE"}
"""Options of NVIDIA's IMEX guide ("IMEX Service Config Options") that fjord may write."""
LABEL_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _narvik() -> tuple[Site, SiteSize]:
    site = load_site(read_stack("narvik", STACKS).site, "narvik")
    return site, size_site(site)


def test_every_nvl72_rack_is_one_imex_domain_of_its_18_trays() -> None:
    site, size = _narvik()
    sized = next(c for c in size.clusters if c.name == "gb200-b")
    domains = [d for u in sized.units for d in nvlink_domains(site.name, u, True)]
    hosts = {n.name: n for n in size.hosts() if n.cluster == "gb200-b"}
    assert len(domains) == sized.racks == 350
    for d in domains:
        assert len(d.nodes) == len(d.addresses) == 18
        assert {hosts[n].rack for n in d.nodes} == {d.rack}
        assert [hosts[n].management for n in d.nodes] == list(d.addresses)
        # nodes_config.cfg: one IPv4 address per line, nothing else.
        lines = d.nodes_config().splitlines()
        assert lines == list(d.addresses)
        assert all(re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", line) for line in lines)
    assert len({a for d in domains for a in d.addresses}) == 6300
    # An HGX unit has no rack-wide NVLink domain.
    uk = load_site(read_stack("uk", STACKS).site, "uk")
    assert nvlink_domains("uk", size_site(uk).clusters[0].units[0], False) == []


def test_imex_config_uses_documented_options_only() -> None:
    text = imex_config()
    pairs = dict(line.split("=", 1) for line in text.splitlines())
    assert set(pairs) <= IMEX_DOCUMENTED
    assert pairs["IMEX_NODE_CONFIG_FILE"] == "/etc/nvidia-imex/nodes_config.cfg"
    assert 0 < int(pairs["SERVER_PORT"]) < 65536
    assert pairs == IMEX_OPTIONS


def test_inventory_gives_racks_their_domain_and_slurm_racks_imex() -> None:
    site, size = _narvik()
    children = build_inventory(site, size).data["all"]["children"]
    rack = children["rack_hall_b_r0001"]["vars"]
    assert rack["fjord_nvlink_domain"] == "narvik-hall-b-r0001"
    assert len(rack["imex_nodes"]) == 18
    (label, value), *_ = rack["k8s_node_labels"].items()
    assert label == DOMAIN_LABEL
    assert LABEL_NAME.fullmatch(label)
    assert LABEL_VALUE.fullmatch(value)
    # IMEX on the hosts only where Slurm schedules; on Kubernetes the DRA driver's ComputeDomains run it.
    assert children["cluster_gb200_b"]["vars"]["imex_enabled"] is True
    assert children["cluster_gb200_a"]["vars"]["imex_enabled"] is False
    uk = load_site(read_stack("uk", STACKS).site, "uk")
    uk_children = build_inventory(uk, size_site(uk)).data["all"]["children"]
    assert "imex_enabled" not in uk_children["cluster_h200"]["vars"]
    assert all("imex_nodes" not in g.get("vars", {}) for k, g in uk_children.items() if k.startswith("rack_"))


def test_gpu_operator_enables_compute_domains_on_nvl72_only() -> None:
    site, size = _narvik()
    cluster = next(c for c in size.clusters if c.name == "gb200-a")
    gb200 = next(r for r in build_platform(site, cluster).releases if r.name == "gpu-operator")
    validate_release(gb200)  # every key exists in the chart's values.yaml
    assert gb200.values["draDriver"]["computeDomains"]["enabled"] is True
    assert gb200.values["gpuCluster"]["deployCR"] is True
    assert gb200.values["clusterPolicy"]["deployCR"] is False
    assert gb200.values["draDriver"]["repository"].startswith("registry.narvik.fjord.example/")
    uk = load_site(read_stack("uk", STACKS).site, "uk")
    b200_size = next(c for c in size_site(uk).clusters if c.name == "b200")
    b200 = next(r for r in build_platform(uk, b200_size).releases if r.name == "gpu-operator")
    assert "draDriver" not in b200.values
