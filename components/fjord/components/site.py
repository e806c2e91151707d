"""Site: the root component. Network, Storage and one GpuCluster per cluster, all sized beforehand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.components.gpu_cluster import GpuCluster, GpuClusterArgs, HostsArgs
from fjord.components.network import Network, NetworkArgs
from fjord.components.storage import Storage, StorageArgs
from fjord.providers.playbook import playbooks_digest
from fjord.sizing.site import SiteSize
from fjord.spec.models import Site as SiteSpec


@dataclass(frozen=True)
class SiteArgs:
    spec: SiteSpec
    """The validated site description."""
    size: SiteSize
    """The site as sized by `fjord.sizing.size_site(spec)`; components register exactly this."""
    configure_hosts: bool = True
    """Run site.yml on every scalable unit's hosts (HostConfig) when their inputs change."""


class Site(pulumi.ComponentResource):
    """A GPU site. Its outputs carry the capacity summary and the host inventory."""

    network: Network
    storage: Storage
    clusters: dict[str, GpuCluster]
    summary: pulumi.Output[dict[str, Any]]
    inventory: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:Site", name, None, opts)
        size = args.size
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(f"{name}-network", NetworkArgs(size.fabrics, size.pools), child)
        self.storage = Storage(f"{name}-storage", StorageArgs(tuple(args.spec.storage)), child)
        hosts = HostsArgs(args.spec, playbooks_digest=playbooks_digest()) if args.configure_hosts else None
        self.clusters = {c.name: GpuCluster(f"{name}-{c.name}", GpuClusterArgs(c, hosts), child) for c in size.clusters}
        self.summary = plain(size.totals())
        self.inventory = plain([n.inventory_record() for n in size.hosts()])
        # The inventory is registered once per scalable unit and exported once by the stack; registering
        # it here too would store every host a third time.
        self.register_outputs({"summary": self.summary})
