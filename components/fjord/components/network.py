"""Network: the site's fabrics (one compute fabric per cluster, storage, out-of-band) and IP pools."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pulumi

from fjord.components._outputs import plain
from fjord.sizing.fabric import FabricSize
from fjord.sizing.site import PoolUse


@dataclass(frozen=True)
class FabricArgs:
    fabric: FabricSize
    """The sized fabric: tiers, leaf/spine/core switch counts, cables and power."""


class Fabric(pulumi.ComponentResource):
    """One fabric instance with its switch and cable counts as outputs."""

    switches: pulumi.Output[int]
    cables: pulumi.Output[int]

    def __init__(self, name: str, args: FabricArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:network:Fabric", name, None, opts)
        f = args.fabric
        self.switches = plain(f.switches)
        self.cables = plain(f.cables)
        self.register_outputs({**asdict(f), "switches": self.switches, "cables": self.cables})


@dataclass(frozen=True)
class AddressPoolArgs:
    pool: PoolUse
    """A purpose's supernet and how much of it the site's subnets take."""


class AddressPool(pulumi.ComponentResource):
    """One supernet of the IP plan and its use."""

    supernet: pulumi.Output[str]

    def __init__(self, name: str, args: AddressPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:network:AddressPool", name, None, opts)
        self.supernet = plain(args.pool.supernet)
        self.register_outputs({**asdict(args.pool), "supernet": self.supernet})


@dataclass(frozen=True)
class NetworkArgs:
    fabrics: tuple[FabricSize, ...]
    """Every fabric instance of the site."""
    pools: tuple[PoolUse, ...]
    """Every supernet of the IP plan with its use."""


class Network(pulumi.ComponentResource):
    """The site network: a Fabric child per fabric instance and an AddressPool child per purpose."""

    fabrics: dict[str, Fabric]
    pools: dict[str, AddressPool]
    summary: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("fjord:components:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.fabrics = {f.name: Fabric(f"{name}-fabric-{f.name}", FabricArgs(f), child) for f in args.fabrics}
        self.pools = {p.purpose: AddressPool(f"{name}-pool-{p.purpose}", AddressPoolArgs(p), child) for p in args.pools}
        self.summary = plain(
            {
                "switches": sum(f.switches for f in args.fabrics),
                "cables": sum(f.cables for f in args.fabrics),
                "addresses": sum(p.addresses for p in args.pools),
            }
        )
        self.register_outputs({"summary": self.summary})
