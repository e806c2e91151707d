"""Site: the root component. Network, Storage and one GpuCluster per cluster, all sized beforehand."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.components.gpu_cluster import BareMetalArgs, GpuCluster, GpuClusterArgs, HostsArgs, cluster_resource_name
from fjord.components.network import Network, NetworkArgs
from fjord.components.storage import Storage, StorageArgs
from fjord.platform import build_platform
from fjord.providers.playbook import playbooks_digest
from fjord.sizing.site import SiteSize
from fjord.spec.models import Site as SiteSpec


@dataclass(frozen=True)
class SiteArgs:
    spec: SiteSpec
    """The validated site description."""
    size: SiteSize
    """The site as sized by `fjord.sizing.size_site(spec)`; components register exactly this."""
    bmc_password: pulumi.Input[str] | None = None
    """The BMC password (Pulumi secret `fjord:bmcPassword`); None registers no bare-metal layer."""
    configure_hosts: bool = True
    """Run site.yml on every scalable unit's hosts (HostConfig) when their inputs change."""
    host_vars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-host variables over the generated inventory (fjord:hostVars: how to reach each host)."""
    host_tags: tuple[str, ...] = ()
    """The role tags of site.yml the HostConfig resources run (fjord:hostTags); empty: every role."""
    allow_remove: tuple[str, ...] = ()
    """Clusters the stack's `fjord:allowRemove` lists: not protected, so that removing them can go ahead."""
    platforms: bool = True
    """Register the Kubernetes platforms (False: `fjord bootstrap`'s bare-metal phase, which targets the
    bare-metal layer only; the platforms are still built, so a site that cannot have one is still rejected)."""


class Site(pulumi.ComponentResource):
    """A GPU site. Its outputs carry the capacity summary and the host inventory."""

    network: Network
    storage: Storage
    clusters: dict[str, GpuCluster]
    summary: pulumi.Output[dict[str, Any]]
    inventory: pulumi.Output[list[dict[str, Any]]]
    bare_metal_failed: pulumi.Output[dict[str, str]]
    """Nodes whose last bare-metal operation failed, with the error; the next `pulumi up` retries them."""

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        size = args.size
        # Built before the first registration: a platform the site cannot have rejects the site unchanged.
        platforms = {c.name: build_platform(args.spec, c) for c in size.clusters if c.scheduler == "kubernetes"}
        super().__init__("fjord:components:Site", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(f"{name}-network", NetworkArgs(size.fabrics, size.pools), child)
        self.storage = Storage(f"{name}-storage", StorageArgs(tuple(args.spec.storage)), child)
        bare_metal = None if args.bmc_password is None else BareMetalArgs(args.spec.bmc, args.bmc_password)
        hosts = (
            HostsArgs(args.spec, playbooks_digest=playbooks_digest(), host_vars=args.host_vars, tags=args.host_tags)
            if args.configure_hosts
            else None
        )
        self.clusters = {
            c.name: GpuCluster(
                cluster_resource_name(name, c.name),
                GpuClusterArgs(
                    c,
                    platform=platforms.get(c.name) if args.platforms else None,
                    bare_metal=bare_metal,
                    hosts=hosts,
                    protect=c.name not in args.allow_remove,
                ),
                child,
            )
            for c in size.clusters
        }
        pools = [u.bare_metal for c in self.clusters.values() for u in c.units if u.bare_metal is not None]
        self.bare_metal_failed = pulumi.Output.all(*(p.failed for p in pools)).apply(
            lambda failed: {n: e for f in failed for n, e in (f or {}).items()}
        )
        self.summary = plain(size.totals())
        self.inventory = plain(
            [n.inventory_record() for c in self.clusters.values() for u in c.units for n in u.node_list]
        )
        # The inventory is registered once per scalable unit and exported once by the stack; registering
        # it here too would store every host a third time.
        self.register_outputs({"summary": self.summary})
