"""fjord.hosts.slurm: slurm.conf, topology, accounts and QOS generated from the site model (pure, no Slurm)."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.hosts import build_inventory
from fjord.hosts.slurm import DRAIN_PREFIX, hostlist, slurm_cluster, slurm_clusters
from fjord.sizing.site import SiteSize, size_site
from fjord.spec.load import default_site, load_site, read_stack
from fjord.spec.models import Site

STACKS = Path(__file__).resolve().parents[1] / "stacks"


def expand(expr: str) -> list[str]:
    """A Slurm hostlist expression of fjord's form (`prefix[000-017]`, `a,b`, single names) as names."""
    names: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", expr):
        m = re.fullmatch(r"(.*)\[(\d+)-(\d+)\]", part)
        if m is None:
            names.append(part)
            continue
        width = len(m.group(2))
        names += [f"{m.group(1)}{i:0{width}d}" for i in range(int(m.group(2)), int(m.group(3)) + 1)]
    return names


def _stack(name: str) -> tuple[Site, SiteSize]:
    site = load_site(read_stack(name, STACKS).site, name)
    return site, size_site(site)


def _lines(text: str, key: str) -> list[dict[str, str]]:
    """slurm.conf / topology.conf lines starting with `key=` as dicts of their settings."""
    return [
        dict(word.split("=", 1) for word in line.split()) for line in text.splitlines() if line.startswith(f"{key}=")
    ]


def test_hostlist() -> None:
    assert hostlist("x-n", 0, 17) == "x-n[000-017]"
    assert hostlist("x-n", 5, 5) == "x-n005"
    assert expand("x-n[000-002],y") == ["x-n000", "x-n001", "x-n002", "y"]


def test_uk_slurm_conf_has_every_node_once_with_its_rack() -> None:
    site, size = _stack("uk")
    (cluster,) = slurm_clusters(site, size)
    conf = cluster.slurm_conf()
    hosts = {n.name: n for n in size.hosts() if n.cluster == "h200"}
    nodes = [line for line in _lines(conf, "NodeName") if line["NodeName"] != "DEFAULT"]
    listed = [name for line in nodes for name in expand(line["NodeName"])]
    assert Counter(listed) == Counter(list(hosts))
    for line in nodes:
        rack = line["Features"].split(",")[0]
        assert {hosts[n].rack for n in expand(line["NodeName"])} == {rack}
    # The spec's controllers, primary first; accounting on its own host; the H200's GPUs on every node.
    assert [line["SlurmctldHost"] for line in _lines(conf, "SlurmctldHost")] == [
        "uk-h200-su000-n000",
        "uk-h200-su000-n004",
    ]
    assert "AccountingStorageHost=uk-h200-su000-n008\n" in conf
    assert "StateSaveLocation=/vast/slurm/state\n" in conf
    assert "NodeName=DEFAULT Gres=gpu:h200:8\n" in conf
    assert "ClusterName=uk-h200\n" in conf
    (partition,) = _lines(conf, "PartitionName")
    assert partition["PartitionName"] == "h200"
    assert partition["Nodes"] == "ALL"


def test_uk_tree_topology_follows_the_rail_optimised_fabric() -> None:
    site, size = _stack("uk")
    cluster = slurm_cluster(site, next(c for c in size.clusters if c.name == "h200"))
    topo = cluster.topology_conf()
    assert cluster.topology_plugin == "topology/tree"
    assert "TopologyPlugin=topology/tree\n" in cluster.slurm_conf()
    switches = _lines(topo, "SwitchName")
    leaves = [s for s in switches if "Nodes" in s]
    # One leaf-level switch per scalable unit (its rail leaves), with the unit's nodes.
    sized = next(c for c in size.clusters if c.name == "h200")
    assert len(leaves) == sized.scalable_units
    for unit, leaf in zip(sized.units, leaves, strict=True):
        assert expand(leaf["Nodes"]) == [unit.node_name(j) for j in range(unit.node_count)]
    # A two-tier fabric: one spine switch above every unit.
    (top,) = [s for s in switches if "Switches" in s]
    assert expand(top["Switches"]) == [leaf["SwitchName"] for leaf in leaves]


def _synthetic(sus: int, sku: str = "B200", scheduler: str = "slurm", topology: str = "rail-optimised") -> Site:
    raw: dict[str, Any] = copy.deepcopy(default_site())
    raw["power"]["grid_budget_mw"] = 400.0
    raw["halls"][0].update(rack_positions=4000, rack_power_kw=150, cooling="liquid")
    raw["ip_plan"] = {
        "bmc": "10.0.0.0/14",
        "management": "10.4.0.0/14",
        "storage": "10.8.0.0/14",
        "compute": "10.64.0.0/10",
    }
    raw["fabrics"][0]["topology"] = topology
    raw["tenants"] = [{"name": "research", "gpu_quotas": []}, {"name": "guests", "gpu_quotas": []}]
    raw["clusters"][0] = {
        "name": "pod",
        "sku": sku,
        "scalable_units": sus,
        "tenant": "research",
        "scheduler": scheduler,
        "hall": "lab",
        "compute_fabric": "ib",
    }
    return load_site(raw, "synthetic")


def test_three_tier_tree_has_spine_groups_covering_every_unit_once() -> None:
    site = _synthetic(64)
    size = size_site(site)
    cluster = slurm_cluster(site, size.clusters[0])
    assert size.clusters[0].fabric.tiers == 3
    switches = _lines(cluster.topology_conf(), "SwitchName")
    leaves = [s["SwitchName"] for s in switches if "Nodes" in s]
    groups = [s for s in switches if "Switches" in s and s["SwitchName"] != "pod-core"]
    (core,) = [s for s in switches if s["SwitchName"] == "pod-core"]
    assert len(groups) > 1
    assert Counter(n for g in groups for n in expand(g["Switches"])) == Counter(leaves)
    assert expand(core["Switches"]) == [g["SwitchName"] for g in groups]
    nodes = [n for s in switches if "Nodes" in s for n in expand(s["Nodes"])]
    assert len(nodes) == len(set(nodes)) == size.clusters[0].nodes


def test_leaf_spine_tree_puts_each_leafs_nodes_under_one_switch() -> None:
    site = _synthetic(2, topology="leaf-spine")
    size = size_site(site)
    cluster = slurm_cluster(site, size.clusters[0])
    switches = _lines(cluster.topology_conf(), "SwitchName")
    leaves = [s for s in switches if "Nodes" in s]
    per_leaf = site.fabrics[0].switch_model.leaf_downlinks // site.clusters[0].gpu.compute_rails
    assert all(len(expand(s["Nodes"])) <= per_leaf for s in leaves)
    nodes = [n for s in leaves for n in expand(s["Nodes"])]
    assert sorted(nodes) == sorted(n.name for n in size.hosts())


def test_narvik_block_topology_is_one_block_per_nvl72_rack() -> None:
    site, size = _stack("narvik")
    (cluster,) = slurm_clusters(site, size)
    assert cluster.topology_plugin == "topology/block"
    conf = cluster.slurm_conf()
    assert "TopologyPlugin=topology/block\n" in conf
    assert "NodeName=DEFAULT Gres=gpu:gb200:4\n" in conf
    blocks = _lines(cluster.topology_conf(), "BlockName")
    racks: dict[str, list[str]] = {}
    for node in size.hosts():
        if node.cluster == "gb200-b":
            racks.setdefault(node.rack, []).append(node.name)
    assert len(blocks) == len(racks) == 350
    for block in blocks:
        assert expand(block["Nodes"]) == racks[block["BlockName"]]  # a rack's 18 trays: one NVLink domain
    assert cluster.summary()["nodes_per_block"] == "18"
    assert cluster.summary()["blocks"] == 350


def test_accounts_and_qos_follow_the_tenants_gpu_quotas() -> None:
    raw = copy.deepcopy(default_site())
    raw["clusters"][0]["scheduler"] = "slurm"
    raw["tenants"] = [{"name": "platform"}, {"name": "guests", "gpu_quotas": [{"cluster": "h100", "gpus": 12}]}]
    site = load_site(raw)
    size = size_site(site)
    cluster = slurm_cluster(site, size.clusters[0])
    accounts = {a.name: a for a in cluster.accounts}
    # The owner without a quota gets the whole cluster; a quota of 12 H100s is 2 whole 8-GPU nodes at most.
    assert (accounts["platform"].gpus, accounts["platform"].nodes) == (32, 4)
    assert (accounts["guests"].gpus, accounts["guests"].nodes) == (12, 2)
    assert accounts["guests"].grp_tres == "gres/gpu=12,node=2"
    # The default control plane: the cluster's first node runs slurmctld and slurmdbd.
    assert cluster.controllers == ("dev-h100-su000-n000",)
    assert cluster.accounting_host == "dev-h100-su000-n000"


def test_a_kubernetes_cluster_has_no_slurm() -> None:
    site = load_site(default_site())
    with pytest.raises(ValueError, match="'h100' is scheduled by kubernetes; allowed: \\(none\\)"):
        slurm_cluster(site, size_site(site).clusters[0])


def test_inventory_hands_the_roles_the_generated_configuration() -> None:
    site, size = _stack("uk")
    inventory = build_inventory(site, size)
    children = inventory.data["all"]["children"]
    slurm = children["cluster_h200"]["vars"]
    cluster = slurm_cluster(site, next(c for c in size.clusters if c.name == "h200"))
    assert slurm["slurm_controllers"] == ["uk-h200-su000-n000", "uk-h200-su000-n004"]
    assert slurm["slurm_conf_nodes"] == [s.line() for s in cluster.node_sets]
    assert slurm["slurm_topology_conf"] == list(cluster.topology)
    assert slurm["slurm_drain_prefix"] == DRAIN_PREFIX
    assert slurm["slurm_conf_settings"]["ClusterName"] == "uk-h200"
    # The groups the Slurm playbook's phases run on.
    assert children["slurm"]["children"] == {"cluster_h200": None}
    assert set(children["slurmctld"]["hosts"]) == {"uk-h200-su000-n000", "uk-h200-su000-n004"}
    assert set(children["slurmdbd"]["hosts"]) == {"uk-h200-su000-n008"}
    assert len(inventory.hosts) == len(set(inventory.hosts)) == size.nodes
    # A Kubernetes cluster's hosts get no Slurm.
    assert not [k for k in children["cluster_b200"]["vars"] if k.startswith("slurm_")]


def test_fjord_size_shows_the_slurm_view() -> None:
    result = CliRunner().invoke(app, ["size", "narvik", "--json", "--stacks-dir", str(STACKS)])
    assert result.exit_code == 0, result.output
    (view,) = json.loads(result.stdout)["slurm"]
    assert view | {"accounts": None} == {
        "cluster": "gb200-b",
        "slurm_cluster": "narvik-gb200-b",
        "partition": "gb200-b",
        "nodes": 6300,
        "controllers": "narvik-gb200-b-su000-n000, narvik-gb200-b-su000-n018",
        "accounting": "narvik-gb200-b-su000-n036",
        "topology": "block",
        "blocks": 350,
        "nodes_per_block": "18",
        "switches": 0,
        "accounts": None,
    }
    table = CliRunner().invoke(app, ["size", "uk", "--stacks-dir", str(STACKS)], env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "Slurm" in table.stdout
    assert "uk-h200-su000-n000, uk-h200-su000-n004" in table.stdout
