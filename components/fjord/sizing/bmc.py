"""Where each node's BMC is: one decision, used by the bare-metal provider and the `fjord bmc` commands."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fjord.sizing.site import Node
from fjord.spec.models import Bmc


@dataclass(frozen=True, slots=True)
class BmcEndpoint:
    node: str
    url: str
    """The Redfish service: `<scheme>://<bmc address>[:port]`, or the site's lab `endpoint`."""
    system_id: str | None
    """The node's system on a lab endpoint (default: the node's name); None: the BMC's only system."""


def bmc_endpoints(nodes: Iterable[Node], bmc: Bmc) -> list[BmcEndpoint]:
    port = f":{bmc.port}" if bmc.port else ""
    if bmc.endpoint is not None:
        return [BmcEndpoint(n.name, bmc.endpoint, bmc.systems.get(n.name, n.name)) for n in nodes]
    return [BmcEndpoint(n.name, f"{bmc.scheme}://{n.bmc}{port}", None) for n in nodes]
