"""Site: the root component. Network, Storage and one GpuCluster per cluster, all sized beforehand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.components.gpu_cluster import GpuCluster, GpuClusterArgs
from fjord.components.network import Network, NetworkArgs
from fjord.components.storage import Storage, StorageArgs
from fjord.platform import build_platform
from fjord.sizing.site import SiteSize
from fjord.spec.models import Site as SiteSpec


@dataclass(frozen=True)
class SiteArgs:
    spec: SiteSpec
    """The validated site description."""
    size: SiteSize
    """The site as sized by `fjord.sizing.size_site(spec)`; components register exactly this."""


class Site(pulumi.ComponentResource):
    """A GPU site. Its outputs carry the capacity summary and the host inventory."""

    network: Network
    storage: Storage
    clusters: dict[str, GpuCluster]
    summary: pulumi.Output[dict[str, Any]]
    inventory: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: SiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        size = args.size
        # Built before the first registration: a platform the site cannot have rejects the site unchanged.
        platforms = {c.name: build_platform(args.spec, c) for c in size.clusters if c.scheduler == "kubernetes"}
        super().__init__("fjord:components:Site", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(f"{name}-network", NetworkArgs(size.fabrics, size.pools), child)
        self.storage = Storage(f"{name}-storage", StorageArgs(tuple(args.spec.storage)), child)
        self.clusters = {
            c.name: GpuCluster(
                f"{name}-{c.name}",
                GpuClusterArgs(c, platforms.get(c.name)),
                child,
            )
            for c in size.clusters
        }
        self.summary = plain(size.totals())
        self.inventory = plain([n.inventory_record() for n in size.hosts()])
        # The inventory is registered once per scalable unit and exported once by the stack; registering
        # it here too would store every host a third time.
        self.register_outputs({"summary": self.summary})
