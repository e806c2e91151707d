"""GpuCluster: one cluster of one SKU, as one ScalableUnit resource per scalable unit (and, on Kubernetes
clusters, its Platform).

Granularity: a scalable unit (32 HGX nodes, or 8 NVL72 racks) is the unit that is built, cabled and
provisioned together, so it is one resource managing its nodes in bulk. A 100k-GPU site is then a few hundred
resources, not tens of thousands (see the README, "Scale"). A change of the GPU stack of nodes in service rolls
through the cluster as a whole (one ClusterRollout per cluster, docs/safe-change.md), not unit by unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import pulumi

from fjord.components._outputs import plain
from fjord.components.platform import Platform, PlatformArgs
from fjord.hosts.inventory import cluster_inventory, unit_group, unit_inventory
from fjord.platform import ClusterPlatform
from fjord.providers.baremetal import NodePool, unit_props
from fjord.providers.playbook import HostConfig, HostConfigArgs
from fjord.providers.rollout import ClusterRollout, ClusterRolloutArgs
from fjord.sizing.bmc import bmc_endpoints
from fjord.sizing.site import ClusterSize, Node, ScalableUnitSize
from fjord.spec.models import Bmc
from fjord.spec.models import Site as SiteSpec


@dataclass(frozen=True)
class BareMetalArgs:
    bmc: Bmc
    """How the nodes' BMCs are reached and the state their nodes are kept in (the site's `bmc`)."""
    password: pulumi.Input[str]
    """The BMC password, a Pulumi secret (`fjord:bmcPassword`)."""
    power_off_in_service: Literal["rollout", "refuse"] = "refuse"
    """Who powers off a node in service for a declared `power: off`: the cluster's drained rollout (where fjord
    configures the hosts; set by GpuCluster) or nobody (the node is failed with how to drain it)."""


@dataclass(frozen=True)
class ScalableUnitArgs:
    unit: ScalableUnitSize
    """The sized unit: its nodes with every interface address, its racks and its subnets."""
    sku: str
    """GPU SKU of the unit's nodes (catalog name)."""
    nodes: Sequence[Node]
    """The unit's nodes (`unit.nodes()`), derived once by the cluster for every layer that needs them."""
    bare_metal: BareMetalArgs | None = None
    """The bare-metal layer: when set, a `NodePool` child keeps the unit's nodes through their BMCs."""


def cluster_resource_name(site: str, cluster: str) -> str:
    """A GpuCluster's resource name (the Site names its clusters so)."""
    return f"{site}-{cluster}"


def unit_resource_name(cluster_resource: str, index: int) -> str:
    """A ScalableUnit's resource name under its GpuCluster's (its NodePool is `<this>-baremetal`)."""
    return f"{cluster_resource}-su{index:03d}"


class ScalableUnit(pulumi.ComponentResource):
    """A scalable unit: its nodes are managed in bulk.

    Its registered outputs are the unit's address plan (a subnet per purpose and rail), racks and node
    count, from which every node's addresses follow; the host-by-host inventory is exported once, by the
    stack, rather than stored again per unit.

    A site has hundreds of units, so the unit keeps per-instance Pulumi work small: it registers those
    outputs as plain values, its Output attributes are made when read, and it has no class annotations
    (Pulumi reads a resource class's annotations again for every instance, `pulumi._types.resource_types`).
    """

    def __init__(self, name: str, args: ScalableUnitArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:ScalableUnit", name, None, opts)
        self.node_list: Sequence[Node] = args.nodes
        """The unit's nodes as plain data (not an output: the stack exports the inventory once)."""
        self.unit: ScalableUnitSize = args.unit
        """The sized unit (racks, subnets, node count), from which the Output attributes below are made."""
        self.bare_metal: NodePool | None = None
        if args.bare_metal is not None:
            nodes = bmc_endpoints(args.nodes, args.bare_metal.bmc)
            self.bare_metal = NodePool(
                f"{name}-baremetal",
                unit_props(
                    args.unit.name,
                    nodes,
                    args.bare_metal.bmc,
                    args.bare_metal.password,
                    args.bare_metal.power_off_in_service,
                ),
                pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs(
            {
                "sku": args.sku,
                "first_node": args.unit.first_node,
                "racks": list(args.unit.racks),
                "subnets": dict(args.unit.subnets),
                "node_count": args.unit.node_count,
            }
        )

    @property
    def racks(self) -> pulumi.Output[list[str]]:
        """The unit's racks (registered as the output `racks`)."""
        return plain(list(self.unit.racks))

    @property
    def subnets(self) -> pulumi.Output[dict[str, str]]:
        """Purpose -> CIDR, compute rails as compute-r0, ... (registered as the output `subnets`)."""
        return plain(dict(self.unit.subnets))

    @property
    def node_count(self) -> pulumi.Output[int]:
        """The unit's node count (registered as the output `node_count`)."""
        return plain(self.unit.node_count)

    @property
    def hosts(self) -> pulumi.Output[list[dict[str, Any]]]:
        """The unit's hosts with every interface address (built on demand, not registered)."""
        return plain([n.as_dict() for n in self.node_list])


@dataclass(frozen=True)
class HostsArgs:
    """Host configuration: one HostConfig per scalable unit runs `playbook` on the unit's hosts."""

    site: SiteSpec
    playbook: str = "site.yml"
    playbooks_digest: str = ""
    host_vars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-host variables over the generated inventory (fjord:hostVars: connection settings)."""
    tags: tuple[str, ...] = ()
    """Run only these role tags of `playbook` (fjord:hostTags); empty: every role."""


@dataclass(frozen=True)
class GpuClusterArgs:
    cluster: ClusterSize
    """The sized cluster: SKU, node and unit counts, racks, compute fabric and its scalable units."""
    platform: ClusterPlatform | None = None
    """The Kubernetes GPU platform to register on the cluster (Kubernetes clusters only)."""
    bare_metal: BareMetalArgs | None = None
    """The bare-metal layer for every scalable unit of the cluster (None: not managed here)."""
    hosts: HostsArgs | None = None
    """Configure the nodes with Ansible (one HostConfig resource per scalable unit); None = leave them."""
    protect: bool = True
    """Protect the cluster and its tenant namespaces from deletion (Pulumi `protect`); False only for a cluster
    the stack's `fjord:allowRemove` lists. Its scalable units stay unprotected: shrinking releases them."""


class GpuCluster(pulumi.ComponentResource):
    """A GPU cluster: its scalable units as children, its size and compute fabric as outputs."""

    gpus: pulumi.Output[int]
    nodes: pulumi.Output[int]
    scalable_units: pulumi.Output[int]
    units: list[ScalableUnit]
    host_configs: list[HostConfig]
    """One per scalable unit when the hosts are configured (none otherwise)."""
    platform: Platform | None

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        protect = pulumi.ResourceOptions(protect=args.protect)
        super().__init__("fjord:components:GpuCluster", name, None, pulumi.ResourceOptions.merge(opts, protect))
        c = args.cluster
        # Protection is per resource, not inherited: the units (and their nodes' layers) can be released by a
        # shrink; the cluster itself and its tenant namespaces cannot be deleted while protected.
        child = pulumi.ResourceOptions(parent=self, protect=False)
        self.units = []
        self.host_configs = []
        # The cluster group's variables, built for the first unit and shared by the others' inventories.
        group_vars: dict[str, dict[str, Any]] = {}
        nodes_by_unit: dict[int, Sequence[Node]] = {}
        bare_metal = args.bare_metal
        if bare_metal is not None and args.hosts is not None:
            # The cluster's rollout drains nodes in service before it powers them off (docs/safe-change.md).
            bare_metal = replace(bare_metal, power_off_in_service="rollout")
        for u in c.units:
            # A unit's nodes are derived once here for every layer that needs them, not once per layer.
            nodes = nodes_by_unit[u.index] = u.nodes()
            unit_args = ScalableUnitArgs(unit=u, sku=c.sku, bare_metal=bare_metal, nodes=nodes)
            self.units.append(ScalableUnit(unit_resource_name(name, u.index), unit_args, child))
        self.rollout: ClusterRollout | None = None
        if args.hosts is not None:
            # One drained rollout for the whole cluster, after every unit's bare-metal layer has staged any BIOS
            # change it reboots into; each unit's hosts (beside the unit: a unit stays a leaf of the tree) wait
            # for it, so that site.yml never reaches a host the rollout has not finished.
            pools = [unit.bare_metal for unit in self.units if unit.bare_metal is not None]
            self.rollout = _rollout(
                f"{name}-rollout", args.hosts, c, nodes_by_unit, self, pools, group_vars, bare_metal
            )
            for unit in self.units:
                u = unit.unit
                after = [self.rollout, *([unit.bare_metal] if unit.bare_metal is not None else [])]
                hosts = _host_config(
                    f"{name}-su{u.index:03d}-hosts", args.hosts, u, self, nodes_by_unit[u.index], c, after, group_vars
                )
                self.host_configs.append(hosts)
        self.platform = (
            Platform(f"{name}-platform", PlatformArgs(args.platform, protect_namespaces=args.protect), child)
            if args.platform is not None
            else None
        )
        self.gpus = plain(c.gpus)
        self.nodes = plain(c.nodes)
        self.scalable_units = plain(c.scalable_units)
        self.register_outputs(
            {
                "sku": c.sku,
                "tenant": c.tenant,
                "scheduler": c.scheduler,
                "hall": c.hall,
                "gpus": self.gpus,
                "nodes": self.nodes,
                "scalable_units": self.scalable_units,
                "racks": c.racks,
                "compute_fabric": c.fabric.name,
            }
        )


def _versions(hosts: HostsArgs, cluster: str) -> dict[str, Any]:
    """What reaches hosts in service only through the drained, batched rollout (docs/safe-change.md)."""
    spec, sw = hosts.site, hosts.site.software
    c = spec.cluster(cluster)
    return {
        "os": sw.os,
        "driver_branch": sw.driver_branch,
        "driver_source": sw.driver_source,
        "cuda": sw.cuda,
        "kubernetes": sw.kubernetes,
        "driver_owner": c.gpu_stack.driver,
        "container_toolkit_owner": c.gpu_stack.container_toolkit,
        "bios": dict(spec.bmc.bios),
    }


def _rollout(
    name: str,
    hosts: HostsArgs,
    sized: ClusterSize,
    nodes: dict[int, Sequence[Node]],
    parent: pulumi.Resource,
    after: Sequence[pulumi.Resource],
    group_vars: dict[str, dict[str, Any]],
    bare_metal: BareMetalArgs | None,
) -> ClusterRollout:
    bmc = None
    if bare_metal is not None:
        endpoints = bmc_endpoints([n for u in sized.units for n in nodes[u.index]], bare_metal.bmc)
        bmc = unit_props(sized.name, endpoints, bare_metal.bmc, bare_metal.password, "rollout")
    args = ClusterRolloutArgs(
        site=hosts.site.name,
        cluster=sized.name,
        inventory=cluster_inventory(hosts.site, sized, nodes=nodes, host_vars=hosts.host_vars, group_vars=group_vars),
        hosts=tuple(n.name for u in sized.units for n in nodes[u.index]),
        versions=_versions(hosts, sized.name),
        playbooks_digest=hosts.playbooks_digest,
        upgrade=hosts.site.cluster(sized.name).upgrade,
        bmc=bmc,
    )
    opts = pulumi.ResourceOptions(parent=parent, protect=False, depends_on=list(after) or None)
    return ClusterRollout(name, args, opts)


def _host_config(
    name: str,
    hosts: HostsArgs,
    unit: ScalableUnitSize,
    parent: GpuCluster,
    nodes: Sequence[Node],
    sized: ClusterSize,
    after: Sequence[pulumi.Resource],
    group_vars: dict[str, dict[str, Any]] | None = None,
) -> HostConfig:
    spec = hosts.site
    args = HostConfigArgs(
        site=spec.name,
        group=unit_group(unit),
        inventory=unit_inventory(
            spec, unit, host_vars=hosts.host_vars, nodes=nodes, cluster=sized, group_vars=group_vars
        ),
        versions=_versions(hosts, unit.cluster),
        playbook=hosts.playbook,
        playbooks_digest=hosts.playbooks_digest,
        hosts=tuple(n.name for n in nodes),
        rollout_hosts_pending=parent.rollout.rollout_pending if parent.rollout is not None else None,
        tags=hosts.tags,
    )
    opts = pulumi.ResourceOptions(parent=parent, protect=False, depends_on=list(after) or None)
    return HostConfig(name, args, opts)
