"""A Slurm cluster generated from the site model: slurm.conf, topology.conf, cgroup.conf, accounts and QOS.

Pure and fast (narvik's 6,300-tray Slurm cluster in a few milliseconds): node names are written as Slurm
hostlist expressions, one per rack (`narvik-gb200-b-su000-n[000-017]`), never node by node.

What comes from where:
- controllers and the accounting host: the cluster's `slurm` section (default: its first node);
- nodes: one `NodeName` line per rack, with the rack and scalable unit as node features;
- one partition per cluster, named after it, its tenants' QOS allowed on it;
- topology: `topology/block` with one block per NVL72 rack (its NVLink domain) for rack-scale SKUs, else
  `topology/tree` from the compute fabric: a leaf-level switch per scalable unit (rail-optimised: the unit's
  rail leaves) or per leaf (leaf-spine), spine groups on a three-tier fabric, one top switch;
- accounts and QOS: one account and one QOS per tenant of the cluster (its owner and every tenant with a GPU
  quota on it); the QOS caps the tenant's GPUs (`gres/gpu`) and, as whole nodes, its nodes (`node`).
What only the host knows (CPUs, memory, whether the kernel has cgroups, whether GPUs are present) the
`slurm` role adds at run time through `overrides` / `node_defaults` (see playbooks/roles/slurm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import ceil
from typing import Any, Literal

from fjord.sizing.site import ClusterSize, ScalableUnitSize, SiteSize
from fjord.spec.models import Cluster, Site

DRAIN_PREFIX = "fjord:"
"""Drain reasons fjord sets start with this; fjord resumes only nodes whose reason starts with it, never a drain
someone else set."""

HEALTH_CHECK = "/usr/local/sbin/fjord-slurm-health-check"
"""slurmd's HealthCheckProgram: runs fjord's node validation, drains with a `fjord:` reason on failure."""

PORTS = {"SlurmctldPort": "6817", "SlurmdPort": "6818"}


def hostlist(prefix: str, first: int, last: int) -> str:
    """A Slurm hostlist expression of `prefix` + three digits, first..last: `x-n[000-017]`, `x-n005`."""
    return f"{prefix}{first:03d}" if first == last else f"{prefix}[{first:03d}-{last:03d}]"


def _unit_prefix(unit: ScalableUnitSize) -> str:
    return unit.node_name(0)[:-3]


@dataclass(frozen=True, slots=True)
class NodeSet:
    """Nodes of one rack: a hostlist expression, how many, and their features."""

    rack: str
    nodes: str
    count: int
    unit: int

    def line(self) -> str:
        return f"NodeName={self.nodes} Features={self.rack},su{self.unit:03d} State=UNKNOWN"


@dataclass(frozen=True, slots=True)
class Account:
    """A tenant's Slurm account and the QOS that caps it."""

    name: str
    qos: str
    gpus: int
    nodes: int

    @property
    def grp_tres(self) -> str:
        return f"gres/gpu={self.gpus},node={self.nodes}"


@dataclass(frozen=True, slots=True)
class SlurmCluster:
    """Everything fjord generates for one Slurm cluster."""

    name: str
    """ClusterName: `<site>-<cluster>` (the accounting database's name of the cluster)."""
    cluster: str
    partition: str
    controllers: tuple[str, ...]
    """slurmctld hosts: the primary, then the backup (names resolve through the hosts' /etc/hosts or DNS)."""
    accounting_host: str
    topology_plugin: Literal["topology/tree", "topology/block"]
    gpu_type: str
    gpus_per_node: int
    node_sets: tuple[NodeSet, ...]
    topology: tuple[str, ...]
    accounts: tuple[Account, ...]
    settings: dict[str, str] = field(default_factory=dict)
    release: str | None = None
    containers: bool = True

    @property
    def nodes(self) -> int:
        return sum(s.count for s in self.node_sets)

    @property
    def blocks(self) -> int:
        return len(self.node_sets) if self.topology_plugin == "topology/block" else 0

    def node_defaults(self, gpus: bool = True) -> dict[str, str]:
        """`NodeName=DEFAULT`: the GPUs of every node (the SKU's count) unless `gpus` is false (no GPU present)."""
        return {"Gres": f"gpu:{self.gpu_type}:{self.gpus_per_node}"} if gpus else {}

    def partition_line(self) -> str:
        # Who may use which QOS is the associations' business (AccountingStorageEnforce=qos): a tenant's account
        # allows only the tenant's QOS, and the operators' root account keeps 'normal'.
        return f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE"

    def summary(self) -> dict[str, Any]:
        """The Slurm view of `fjord size`: partition, nodes, topology, nodes per block or leaf switch, accounts."""
        per_block = sorted({s.count for s in self.node_sets}) if self.topology_plugin == "topology/block" else []
        return {
            "cluster": self.cluster,
            "slurm_cluster": self.name,
            "partition": self.partition,
            "nodes": self.nodes,
            "controllers": ", ".join(self.controllers),
            "accounting": self.accounting_host,
            "topology": self.topology_plugin.split("/")[1],
            "blocks": self.blocks,
            "nodes_per_block": ",".join(str(n) for n in per_block) or "-",
            "switches": sum(line.startswith("SwitchName=") for line in self.topology),
            "accounts": ", ".join(f"{a.name} ({a.gpus:,} GPUs)" for a in self.accounts),
        }

    def slurm_conf(
        self, overrides: Mapping[str, str] | None = None, node_defaults: Mapping[str, str] | None = None
    ) -> str:
        """slurm.conf: `overrides` replace or add settings (the role's run-time choices), `node_defaults` is the
        `NodeName=DEFAULT` line (hardware), default the SKU's GPUs."""
        settings = {**self.settings, **(overrides or {})}
        defaults = self.node_defaults() if node_defaults is None else node_defaults
        lines = ["# Generated by fjord from the site description; edit the stack, not this file."]
        lines += [f"SlurmctldHost={host}" for host in self.controllers]
        lines += [f"{k}={v}" for k, v in settings.items()]
        if defaults:
            lines.append("NodeName=DEFAULT " + " ".join(f"{k}={v}" for k, v in defaults.items()))
        lines += [s.line() for s in self.node_sets]
        lines.append(self.partition_line())
        return "\n".join(lines) + "\n"

    def topology_conf(self) -> str:
        return "# Generated by fjord from the site's fabric model.\n" + "\n".join(self.topology) + "\n"

    def inventory_vars(self) -> dict[str, Any]:
        """The cluster's `slurm_*` inventory variables: the interface to playbooks/roles/slurm and munge."""
        return {
            "slurm_enabled": True,
            "munge_enabled": True,
            "munge_key_host": self.controllers[0],
            "slurm_cluster_name": self.name,
            "slurm_partition": self.partition,
            "slurm_controllers": list(self.controllers),
            "slurm_accounting_host": self.accounting_host,
            "slurm_conf_settings": dict(self.settings),
            "slurm_conf_nodes": [s.line() for s in self.node_sets],
            "slurm_conf_partitions": [self.partition_line()],
            "slurm_gres_gpu": f"gpu:{self.gpu_type}:{self.gpus_per_node}",
            "slurm_gpu_type": self.gpu_type,
            "slurm_topology_plugin": self.topology_plugin,
            "slurm_topology_conf": list(self.topology),
            "slurm_accounts": [
                {"name": a.name, "qos": a.qos, "grp_tres": a.grp_tres, "gpus": a.gpus, "nodes": a.nodes}
                for a in self.accounts
            ],
            "slurm_release": self.release,
            "slurm_containers": self.containers,
            "slurm_drain_prefix": DRAIN_PREFIX,
            "slurm_cgroup_conf": cgroup_conf().splitlines()[1:],
            "slurm_health_check_program": HEALTH_CHECK,
        }


def _gpu_type(sku: str) -> str:
    """The GRES type of a SKU: `h100`, `gb200` (lower case, the product without its form factor)."""
    return sku.split("-")[0].lower()


def node_sets(size: ClusterSize) -> tuple[NodeSet, ...]:
    """One set per rack and unit (a rack shared by two units is two sets: a hostlist has one prefix)."""
    return tuple(
        NodeSet(rack, hostlist(_unit_prefix(u), first, last), last - first + 1, u.index)
        for u in size.units
        for rack, first, last in u.rack_runs()
    )


def _ranges(names: Iterable[str], prefix: str) -> str:
    """`prefix[000-003]` from names prefix000..prefix003 (consecutive, as fjord numbers units)."""
    digits = [int(n[len(prefix) :]) for n in names]
    return hostlist(prefix, digits[0], digits[-1]) if digits == list(range(digits[0], digits[-1] + 1)) else ""


def tree_topology(site: Site, cluster: Cluster, size: ClusterSize) -> tuple[str, ...]:
    """topology/tree from the compute fabric: leaf-level switches, spine groups on three tiers, one top switch."""
    fabric = site.fabric(cluster.compute_fabric)
    switch = fabric.switch_model
    rails = cluster.gpu.compute_rails
    lines: list[str] = []
    leaves: list[str] = []
    leaf_prefix = f"{cluster.name}-leaf"
    if fabric.topology == "rail-optimised":
        # Every node of a unit sits on the unit's rail leaves: the unit is one leaf-level switch to Slurm.
        for u in size.units:
            name = f"{cluster.name}-su{u.index:03d}"
            lines.append(f"SwitchName={name} Nodes={hostlist(_unit_prefix(u), 0, u.node_count - 1)}")
            leaves.append(name)
        leaves_per_group = max(1, (switch.radix // 2) // max(1, size.fabric.leaves // max(1, len(size.units))))
    else:
        # Leaf-spine: a leaf's downlinks serve downlinks // rails nodes, in node order.
        per_leaf = max(1, switch.leaf_downlinks // rails)
        k = 0
        for u in size.units:
            prefix = _unit_prefix(u)
            for first in range(0, u.node_count, per_leaf):
                name = f"{leaf_prefix}{k:04d}"
                lines.append(
                    f"SwitchName={name} Nodes={hostlist(prefix, first, min(u.node_count, first + per_leaf) - 1)}"
                )
                leaves.append(name)
                k += 1
        leaves_per_group = max(1, switch.radix // 2)
    top = f"{cluster.name}-spine" if size.fabric.tiers <= 2 else f"{cluster.name}-core"
    if size.fabric.tiers <= 2 or len(leaves) <= leaves_per_group:
        lines.append(f"SwitchName={top} Switches={_switches(leaves)}")
        return tuple(lines)
    groups: list[str] = []
    for g, start in enumerate(range(0, len(leaves), leaves_per_group)):
        name = f"{cluster.name}-spines{g:03d}"
        lines.append(f"SwitchName={name} Switches={_switches(leaves[start : start + leaves_per_group])}")
        groups.append(name)
    lines.append(f"SwitchName={top} Switches={_switches(groups)}")
    return tuple(lines)


def _switches(names: list[str]) -> str:
    """Switch names as one hostlist where they share a prefix and count up, else comma-separated."""
    digits = len(names[0]) - len(names[0].rstrip("0123456789"))
    prefix = names[0][:-digits] if digits else names[0]
    if digits and all(n[:-digits] == prefix and len(n) == len(names[0]) for n in names):
        numbers = [int(n[-digits:]) for n in names]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            if len(numbers) == 1:
                return names[0]
            return f"{prefix}[{numbers[0]:0{digits}d}-{numbers[-1]:0{digits}d}]"
    return ",".join(names)


def block_topology(sets: tuple[NodeSet, ...]) -> tuple[str, ...]:
    """topology/block: one block per NVL72 rack, its compute trays (one NVLink domain, one IMEX domain)."""
    return tuple(f"BlockName={s.rack} Nodes={s.nodes}" for s in sets)


def accounts(site: Site, cluster: Cluster, size: ClusterSize) -> tuple[Account, ...]:
    """An account and a QOS per tenant of the cluster: its GPU quota there, else (the owner) all its GPUs."""
    per_node = cluster.gpu.gpus_per_node
    quotas = {t.name: q.gpus for t in site.tenants for q in t.gpu_quotas if q.cluster == cluster.name}
    tenants = dict.fromkeys([cluster.tenant, *quotas])
    return tuple(
        Account(name, name, quotas.get(name, size.gpus), ceil(quotas.get(name, size.gpus) / per_node))
        for name in tenants
    )


def _settings(site: Site, cluster: Cluster, accounting: str) -> dict[str, str]:
    block = cluster.gpu.rack_scale
    slurm = cluster.slurm
    interval = slurm.health_check_interval_s if slurm else 300
    settings = {
        "ClusterName": f"{site.name}-{cluster.name}",
        "SlurmUser": "slurm",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        **PORTS,
        "StateSaveLocation": slurm.state_dir if slurm else "/var/lib/slurm/slurmctld",
        "SlurmdSpoolDir": "/var/lib/slurm/slurmd",
        "SlurmctldPidFile": "/run/slurmctld.pid",
        "SlurmdPidFile": "/run/slurmd.pid",
        "SlurmctldLogFile": "/var/log/slurm/slurmctld.log",
        "SlurmdLogFile": "/var/log/slurm/slurmd.log",
        "SlurmctldTimeout": "120",
        "SlurmdTimeout": "300",
        "ReturnToService": "2",
        "SchedulerType": "sched/backfill",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core_Memory",
        "PriorityType": "priority/multifactor",
        "ProctrackType": "proctrack/cgroup",
        "TaskPlugin": "task/cgroup,task/affinity",
        "JobAcctGatherType": "jobacct_gather/cgroup",
        "MpiDefault": "none",
        "GresTypes": "gpu",
        "AccountingStorageType": "accounting_storage/slurmdbd",
        "AccountingStorageHost": accounting,
        "AccountingStorageEnforce": "associations,limits,qos,safe",
        "AccountingStorageTRES": "gres/gpu",
        "JobCompType": "jobcomp/none",
        "TopologyPlugin": "topology/block" if block else "topology/tree",
        "HealthCheckProgram": HEALTH_CHECK,
        "HealthCheckInterval": str(interval),
        "HealthCheckNodeState": "ANY,CYCLE",
    }
    if not block:
        settings["TopologyParam"] = "TopoOptional"
    return settings


def slurm_cluster(site: Site, sized: ClusterSize) -> SlurmCluster:
    """The Slurm cluster of the sized cluster `sized` (a cluster whose scheduler is 'slurm')."""
    cluster = site.cluster(sized.name)
    if cluster.scheduler != "slurm":
        slurm_names = [c.name for c in site.clusters if c.scheduler == "slurm"]
        raise ValueError(
            f"cluster {sized.name!r} is scheduled by {cluster.scheduler}; allowed: {', '.join(slurm_names) or '(none)'}"
        )
    spec = cluster.slurm
    controllers = tuple(spec.controllers) if spec and spec.controllers else (sized.units[0].node_name(0),)
    accounting = spec.accounting_host if spec and spec.accounting_host else controllers[0]
    sets = node_sets(sized)
    topology = block_topology(sets) if cluster.gpu.rack_scale else tree_topology(site, cluster, sized)
    return SlurmCluster(
        name=f"{site.name}-{cluster.name}",
        cluster=cluster.name,
        partition=cluster.name,
        controllers=controllers,
        accounting_host=accounting,
        topology_plugin="topology/block" if cluster.gpu.rack_scale else "topology/tree",
        gpu_type=_gpu_type(cluster.sku),
        gpus_per_node=cluster.gpu.gpus_per_node,
        node_sets=sets,
        topology=topology,
        accounts=accounts(site, cluster, sized),
        settings=_settings(site, cluster, accounting),
        release=spec.release if spec else None,
        containers=spec.containers if spec else True,
    )


def slurm_clusters(site: Site, size: SiteSize) -> list[SlurmCluster]:
    """Every Slurm cluster of the site, in the order of the site's clusters."""
    return [slurm_cluster(site, c) for c in size.clusters if c.scheduler == "slurm"]


def cgroup_conf() -> str:
    """cgroup.conf for proctrack/cgroup and task/cgroup: jobs confined to their cores, memory and GPUs."""
    return (
        "# Generated by fjord.\n"
        "ConstrainCores=yes\n"
        "ConstrainRAMSpace=yes\n"
        "ConstrainSwapSpace=yes\n"
        "ConstrainDevices=yes\n"
    )
