"""Rack-scale NVLink domains (GB200/GB300 NVL72): one domain per rack, its 18 compute trays.

Pure: for each NVL72 rack of a cluster, the trays' names and management addresses, the IMEX service's files for
the rack (`/etc/nvidia-imex/nodes_config.cfg`: one IP address per line, the trays of the IMEX domain;
`/etc/nvidia-imex/config.cfg`: `KEY=value` lines, NVIDIA's documented options only) and the NVLink domain label a
Kubernetes node carries. On a Slurm cluster the IMEX service runs on the hosts (role `imex`) and topology/block
has one block per rack (fjord.hosts.slurm); on a Kubernetes cluster the NVIDIA DRA driver's ComputeDomains run
IMEX in pods, so the host service stays off (fjord.platform).
"""

from __future__ import annotations

from dataclasses import dataclass

from fjord.sizing.site import ScalableUnitSize

IMEX_DIR = "/etc/nvidia-imex"
IMEX_PORT = 50000
"""The IMEX service's TCP port (NVIDIA's default SERVER_PORT)."""

IMEX_OPTIONS = {
    "DAEMONIZE": "1",
    "BIND_INTERFACE_IP": "",
    "SERVER_PORT": str(IMEX_PORT),
    "IMEX_NODE_CONFIG_FILE": f"{IMEX_DIR}/nodes_config.cfg",
}
"""The IMEX config file fjord writes: NVIDIA's documented options (IMEX guide, "IMEX Service Config Options").
An empty BIND_INTERFACE_IP makes the service bind the address of this node that nodes_config.cfg lists."""

DOMAIN_LABEL = "fjord.io/nvlink-domain"
"""The Kubernetes node label naming a node's NVLink domain (its rack): what ComputeDomain workloads and
operators select on, beside GPU Feature Discovery's own `nvidia.com/gpu.clique`."""


@dataclass(frozen=True, slots=True)
class NvlinkDomain:
    """One NVL72 rack: its NVLink (and IMEX) domain."""

    name: str
    """`<site>-<rack>`: unique in the site, a valid label value."""
    rack: str
    nodes: tuple[str, ...]
    addresses: tuple[str, ...]
    """The trays' management addresses, in node order: the IMEX domain's node list."""

    def nodes_config(self) -> str:
        """nodes_config.cfg: the IP address of every node of the IMEX domain, one per line."""
        return "".join(f"{a}\n" for a in self.addresses)


def domain_name(site: str, rack: str) -> str:
    return f"{site}-{rack}"


def domain_vars(site: str, rack: str, addresses: list[str]) -> dict[str, object]:
    """An NVL72 rack group's inventory variables: its domain, the IMEX node list, the Kubernetes node label."""
    name = domain_name(site, rack)
    return {"fjord_nvlink_domain": name, "imex_nodes": list(addresses), "k8s_node_labels": {DOMAIN_LABEL: name}}


def imex_config() -> str:
    """config.cfg of the IMEX service (the same on every tray)."""
    return "".join(f"{k}={v}\n" for k, v in IMEX_OPTIONS.items())


def nvlink_domains(site: str, unit: ScalableUnitSize, rack_scale: bool) -> list[NvlinkDomain]:
    """The NVLink domains of one scalable unit, one per rack; none for HGX (a node is its own NVLink domain)."""
    if not rack_scale:
        return []
    addresses = unit.management.hosts(unit.node_count)
    return [
        NvlinkDomain(
            name=domain_name(site, rack),
            rack=rack,
            nodes=tuple(unit.node_name(j) for j in range(first, last + 1)),
            addresses=tuple(addresses[first : last + 1]),
        )
        for rack, first, last in unit.rack_runs()
    ]
