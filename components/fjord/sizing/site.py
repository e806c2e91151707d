"""Size a whole site: clusters, scalable units, racks in halls, fabrics, addresses, power, inventory.

`size_site` is the single entry point. It is pure and fast (100k GPUs well under a second), and it
raises `SiteError` naming every field whose value makes the site impossible, before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, floor
from typing import Any, Literal

from fjord.sizing.alloc import (
    Allocation,
    ClusterAlloc,
    ClusterDemand,
    Demand,
    RackDemand,
    allocate,
    differences,
)
from fjord.sizing.fabric import (
    FabricSize,
    leaf_spine_leaves,
    max_endpoints,
    rail_optimised_leaves,
    size_fabric,
)
from fjord.sizing.ipam import Subnet
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import load_site
from fjord.spec.models import Cluster, Site

DNS_LABEL_MAX = 63
"""Longest DNS label (RFC 1035): a host name fjord derives (`<site>-<cluster>-suNNN-nNNN`) is one label."""

SWITCHES_PER_NETWORK_RACK = 16
"""Switches one network rack holds (spine and core tiers, and leaves of the non-compute fabrics)."""

PURPOSES = ("bmc", "management", "compute", "storage")


@dataclass(frozen=True, slots=True)
class Node:
    """One GPU node (an HGX server or an NVL72 compute tray) with an address on every interface."""

    name: str
    cluster: str
    scalable_unit: int
    rack: str
    hall: str
    bmc: str
    management: str
    compute: tuple[str, ...]
    storage: str
    role: str = "gpu"

    def inventory_record(self) -> dict[str, Any]:
        """What the stack exports per host: identity, place and the two addresses tools reach it by.

        Fabric and storage addresses follow from the unit's subnets (each ScalableUnit's `subnets` output
        and `as_dict`), so the exported inventory does not carry them a second time.
        """
        return {
            "name": self.name,
            "role": self.role,
            "cluster": self.cluster,
            "scalable_unit": self.scalable_unit,
            "rack": self.rack,
            "hall": self.hall,
            "bmc_address": self.bmc,
            "management_address": self.management,
        }

    def as_dict(self) -> dict[str, Any]:
        """Everything about the node, every interface address included."""
        return {
            **self.inventory_record(),
            "compute_addresses": list(self.compute),
            "storage_address": self.storage,
        }


@dataclass(frozen=True, slots=True)
class RackDevice:
    """A managed device of a rack-scale product besides its compute trays (an NVL72 rack's NVLink switch trays and
    power shelves): a BMC on the out-of-band network, with an address from its unit's BMC subnet."""

    name: str
    """`<rack>-<kind>-<k>`, e.g. `hall-a-r0001-nvswitch-1`: one DNS label."""
    kind: str
    cluster: str
    scalable_unit: int
    rack: str
    hall: str
    bmc: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "cluster": self.cluster,
            "scalable_unit": self.scalable_unit,
            "rack": self.rack,
            "hall": self.hall,
            "bmc_address": self.bmc,
        }


def host_name(prefix: str, unit: int, node: int) -> str:
    """A node's host name: `<site>-<cluster>-suNNN-nNNN` (`prefix` is `<site>-<cluster>`), one DNS label."""
    return f"{prefix}-su{unit:03d}-n{node:03d}"


@dataclass(frozen=True, slots=True)
class ScalableUnitSize:
    """A sized scalable unit. Its nodes are derived on demand from its subnets and rack layout, so that
    sizing 100k GPUs does not format 175k address strings until someone asks for the inventory."""

    cluster: str
    index: int
    node_count: int
    racks: tuple[str, ...]
    subnets: dict[str, str]
    """Purpose -> CIDR of this unit (compute rails as compute-r0, compute-r1, ...)."""
    host_prefix: str
    hall: str
    first_slot: int
    """The cluster-wide slot index of the unit's first node (racks fill slot by slot)."""
    rack_positions: tuple[int, ...]
    """The cluster's compute rack positions in its hall (allocation record): slot k stands in rack k // per rack."""
    nodes_per_rack: int
    bmc: Subnet
    management: Subnet
    storage: Subnet
    rails: tuple[Subnet, ...]
    rack_devices: tuple[tuple[str, int], ...] = ()
    """Managed devices per rack besides the nodes, (kind, count): their BMC addresses follow the unit's node slots
    in its BMC subnet (`devices`), rack by rack."""
    node_slots: int = 0
    """Node slots of a full unit: where the devices' addresses start in the BMC subnet."""

    @property
    def name(self) -> str:
        return f"{self.cluster}-su{self.index:03d}"

    @property
    def first_node(self) -> str:
        return host_name(self.host_prefix, self.index, 0)

    def node_name(self, j: int) -> str:
        """The name of the unit's node `j` (0-based)."""
        return host_name(self.host_prefix, self.index, j)

    def rack_runs(self) -> list[tuple[str, int, int]]:
        """The unit's nodes rack by rack, without formatting an address: (rack, first node j, last node j)."""
        per_rack, first, count = self.nodes_per_rack, self.first_slot, self.node_count
        runs: list[tuple[str, int, int]] = []
        j = 0
        while j < count:
            slot = first + j
            last = min(count - 1, j + per_rack - 1 - slot % per_rack)
            runs.append((f"{self.hall}-r{self.rack_positions[slot // per_rack]:04d}", j, last))
            j = last + 1
        return runs

    @property
    def device_count(self) -> int:
        """Managed devices of the unit's racks besides its nodes (NVL72 switch trays and power shelves)."""
        return len(self.racks) * sum(n for _, n in self.rack_devices)

    def devices(self) -> list[RackDevice]:
        """The unit's racks' managed devices, rack by rack, each with its BMC address."""
        if not self.rack_devices:
            return []
        per_rack = sum(n for _, n in self.rack_devices)
        out: list[RackDevice] = []
        for r, rack in enumerate(self.racks):
            k = 0
            for kind, count in self.rack_devices:
                for j in range(count):
                    address = self.bmc.host(self.node_slots + r * per_rack + k)
                    out.append(
                        RackDevice(f"{rack}-{kind}-{j + 1}", kind, self.cluster, self.index, rack, self.hall, address)
                    )
                    k += 1
        return out

    def nodes(self) -> list[Node]:
        per_rack, positions, first, count = self.nodes_per_rack, self.rack_positions, self.first_slot, self.node_count
        # Column by column: each interface's addresses in one bulk call (Subnet.hosts), zipped per node.
        names = [host_name(self.host_prefix, self.index, j) for j in range(count)]
        racks = [f"{self.hall}-r{positions[(first + j) // per_rack]:04d}" for j in range(count)]
        compute = list(zip(*(net.hosts(count) for net in self.rails), strict=True)) if self.rails else [()] * count
        columns = zip(
            names,
            racks,
            self.bmc.hosts(count),
            self.management.hosts(count),
            compute,
            self.storage.hosts(count),
            strict=True,
        )
        cluster, unit, hall = self.cluster, self.index, self.hall
        # Positional (Node's field order): a third faster than keywords, 25k nodes a site.
        return [
            Node(name, cluster, unit, rack, hall, bmc, management, rails, storage)
            for name, rack, bmc, management, rails, storage in columns
        ]


@dataclass(frozen=True, slots=True)
class ClusterSize:
    name: str
    sku: str
    tenant: str
    scheduler: str
    hall: str
    gpus: int
    nodes: int
    scalable_units: int
    nodes_per_su: int
    nodes_per_rack: int
    racks: int
    network_racks: int
    rack_kw: float
    compute_kw: float
    fabric: FabricSize
    units: tuple[ScalableUnitSize, ...]


@dataclass(frozen=True, slots=True)
class HallUse:
    name: str
    positions: int
    compute_racks: int
    network_racks: int
    storage_racks: int

    @property
    def used(self) -> int:
        return self.compute_racks + self.network_racks + self.storage_racks


@dataclass(frozen=True, slots=True)
class RackRange:
    """Consecutive rack positions of a hall given to one owner: a cluster's compute or network racks, a
    site fabric's network racks, or a storage tier."""

    hall: str
    kind: Literal["compute", "network", "storage"]
    owner: str
    first: int
    last: int

    @property
    def racks(self) -> int:
        return self.last - self.first + 1

    @property
    def span(self) -> str:
        return f"{self.hall}-r{self.first:04d}..r{self.last:04d}"


@dataclass(frozen=True, slots=True)
class PoolUse:
    purpose: str
    supernet: str
    subnets: int
    addresses: int
    """Interfaces given an address."""
    capacity: int
    reserved: int = 0
    """Addresses the subnets take from the supernet's start to the end of the last one: every subnet whole (sized
    for a full unit, network, gateway and broadcast included) and the gaps aligning them leave."""


@dataclass(frozen=True, slots=True)
class PowerUse:
    compute_kw: float
    network_kw: float
    storage_kw: float
    pue: float
    budget_kw: float

    @property
    def it_kw(self) -> float:
        return self.compute_kw + self.network_kw + self.storage_kw

    @property
    def facility_kw(self) -> float:
        return self.it_kw * self.pue

    @property
    def headroom_kw(self) -> float:
        return self.budget_kw - self.facility_kw


@dataclass(frozen=True, slots=True)
class SiteSize:
    site: str
    clusters: tuple[ClusterSize, ...]
    fabrics: tuple[FabricSize, ...]
    """Every fabric instance: one compute fabric per cluster, then the site's storage and OOB fabrics."""
    halls: tuple[HallUse, ...]
    placement: tuple[RackRange, ...]
    """Every rack position in use, hall by hall: compute racks first (node rack names follow them)."""
    pools: tuple[PoolUse, ...]
    power: PowerUse
    alloc: Allocation
    """The allocation record the racks and subnets come from (`fjord alloc` writes it)."""

    @property
    def gpus(self) -> int:
        return sum(c.gpus for c in self.clusters)

    @property
    def nodes(self) -> int:
        return sum(c.nodes for c in self.clusters)

    @property
    def racks(self) -> int:
        return sum(h.used for h in self.halls)

    @property
    def switches(self) -> int:
        return sum(f.switches for f in self.fabrics)

    @property
    def cables(self) -> int:
        return sum(f.cables for f in self.fabrics)

    @property
    def addresses(self) -> int:
        return sum(p.addresses for p in self.pools)

    def totals(self) -> dict[str, Any]:
        """The capacity figures a stack exports as `summary` and `fjord size` reports as totals."""
        return {
            "gpus": self.gpus,
            "nodes": self.nodes,
            "racks": self.racks,
            "switches": self.switches,
            "cables": self.cables,
            "addresses": self.addresses,
            "it_mw": round(self.power.it_kw / 1000, 3),
            "facility_mw": round(self.power.facility_kw / 1000, 3),
            "headroom_mw": round(self.power.headroom_kw / 1000, 3),
        }

    def hosts(self) -> list[Node]:
        return [n for c in self.clusters for u in c.units for n in u.nodes()]

    def devices(self) -> list[RackDevice]:
        """Every rack-scale product's other managed devices (NVL72 NVLink switch trays, power shelves)."""
        return [d for c in self.clusters for u in c.units for d in u.devices()]


@dataclass(frozen=True, slots=True)
class _ClusterShape:
    """A cluster's node and unit counts, before racks and addresses."""

    nodes: int
    slots_per_su: int
    scalable_units: int
    ufm_slots: int


def cluster_shape(cluster: Cluster, site: Site) -> _ClusterShape:
    """Nodes and scalable units. UFM appliances take node slots of the cluster (H100 SuperPOD: one)."""
    sku = cluster.gpu
    fabric = site.fabric(cluster.compute_fabric)
    per_su = sku.default_nodes_per_su
    ufm = fabric.ufm_node_slots
    if cluster.scalable_units is not None:
        sus = cluster.scalable_units
        nodes = sus * per_su - ufm
    else:
        assert cluster.gpus is not None
        nodes = cluster.gpus // sku.gpus_per_node
        sus = ceil((nodes + ufm) / per_su)
    return _ClusterShape(nodes, per_su, sus, ufm)


def _cluster_problems(i: int, cluster: Cluster, site: Site, shape: _ClusterShape) -> list[Problem]:
    problems: list[Problem] = []
    sku = cluster.gpu
    hall = site.hall(cluster.hall)
    if shape.nodes <= 0:
        problems.append(
            Problem(
                f"clusters[{i}].scalable_units",
                cluster.scalable_units,
                f"leaves no GPU node once {shape.ufm_slots} UFM slot(s) are taken; allowed: more units",
            )
        )
    rack_kw = sku.rack_max_kw if sku.rack_max_kw is not None else cluster.rack_nodes * sku.node_max_kw
    if rack_kw > hall.rack_power_kw:
        if sku.rack_scale:
            problems.append(
                Problem(
                    f"clusters[{i}].hall",
                    cluster.hall,
                    f"an {sku.name} rack draws {rack_kw:.0f} kW and hall {hall.name!r} allows"
                    f" {hall.rack_power_kw:g} kW per rack; allowed: a hall with racks of >= {rack_kw:.0f} kW",
                )
            )
        else:
            fit = floor(hall.rack_power_kw / sku.node_max_kw)
            problems.append(
                Problem(
                    f"clusters[{i}].nodes_per_rack",
                    cluster.rack_nodes,
                    f"a rack of {cluster.rack_nodes} {sku.name} nodes draws {rack_kw:.1f} kW, over hall"
                    f" {hall.name!r}'s {hall.rack_power_kw:g} kW per rack; allowed: at most {fit} nodes per rack",
                )
            )
    longest = host_name(f"{site.name}-{cluster.name}", max(shape.scalable_units - 1, 0), shape.slots_per_su - 1)
    if len(longest) > DNS_LABEL_MAX:
        spare = DNS_LABEL_MAX - (len(longest) - len(cluster.name))
        problems.append(
            Problem(
                f"clusters[{i}].name",
                cluster.name,
                f"host names <site>-<cluster>-suNNN-nNNN reach {len(longest)} characters ({longest!r});"
                f" allowed: at most {DNS_LABEL_MAX} (one DNS label), so a cluster name of at most"
                f" {max(spare, 0)} characters with site {site.name!r}, or a shorter site name",
            )
        )
    fabric = site.fabric(cluster.compute_fabric)
    endpoints = (shape.nodes + shape.ufm_slots) * sku.compute_rails
    limit = max_endpoints(fabric.switch_model)
    if endpoints > limit:
        problems.append(
            Problem(
                f"clusters[{i}].compute_fabric",
                cluster.compute_fabric,
                f"{endpoints} compute ports exceed the {limit} a three-tier {fabric.switch} fabric can connect;"
                f" allowed: a larger-radix switch or a smaller cluster",
            )
        )
    return problems


def _quota_problems(site: Site, gpus: dict[str, int]) -> list[Problem]:
    """Tenants' GPU quotas on a cluster must fit in the GPUs the cluster has."""
    granted: dict[str, list[tuple[int, int, int]]] = {}
    for i, tenant in enumerate(site.tenants):
        for j, quota in enumerate(tenant.gpu_quotas):
            granted.setdefault(quota.cluster, []).append((i, j, quota.gpus))
    problems: list[Problem] = []
    for cluster, grants in granted.items():
        have = gpus.get(cluster)
        total = sum(g for _, _, g in grants)
        if have is not None and total > have:
            i, j, g = grants[-1]
            problems.append(
                Problem(
                    f"tenants[{i}].gpu_quotas[{j}].gpus",
                    g,
                    f"tenant quotas on cluster {cluster!r} add up to {total} GPUs; allowed: at most the {have} it has",
                )
            )
    return problems


def validate_site(
    raw: Any,
    source: str = "",
    alloc: Allocation | None = None,
    *,
    require_current: bool = False,
    stack: str | None = None,
) -> tuple[Site, SiteSize]:
    """Every rule fjord has, in one call: the model's checks (`load_site`), then sizing's (`size_site`, with
    the allocation record `alloc`, `require_current` and `stack` as it takes them).

    `fjord validate`, `size`, `render`, the plan and the program under `pulumi up` all run exactly this before
    they do anything else, so a site one of them rejects is rejected by all (tests/test_validate_plan_agree.py).
    Raises SiteError, its source set to `source`.
    """
    site = load_site(raw, source)
    try:
        return site, size_site(site, alloc, require_current=require_current, stack=stack)
    except SiteError as exc:
        raise SiteError(exc.problems, source) from None


def cluster_node(cluster: ClusterSize, name: str) -> bool:
    """Whether `name` is a node of the sized cluster (`<site>-<cluster>-suNNN-nNNN`), without listing its nodes."""
    for unit in cluster.units:
        prefix = unit.node_name(0)[:-3]
        if name.startswith(prefix) and name[len(prefix) :].isdigit() and len(name) == len(prefix) + 3:
            return int(name[-3:]) < unit.node_count
    return False


def _slurm_problems(site: Site, clusters: list[ClusterSize]) -> list[Problem]:
    """A Slurm cluster's controllers and accounting host must be nodes of that cluster."""
    sized = {c.name: c for c in clusters}
    problems: list[Problem] = []
    for i, cluster in enumerate(site.clusters):
        size = sized.get(cluster.name)
        if cluster.slurm is None or size is None:
            continue
        first, last = size.units[0].node_name(0), size.units[-1].node_name(size.units[-1].node_count - 1)
        named = [(f"controllers[{k}]", h) for k, h in enumerate(cluster.slurm.controllers)]
        if cluster.slurm.accounting_host is not None:
            named.append(("accounting_host", cluster.slurm.accounting_host))
        problems += [
            Problem(
                f"clusters[{i}].slurm.{path}",
                host,
                f"is no node of cluster {cluster.name!r}; allowed: one of its nodes, {first} to {last}",
            )
            for path, host in named
            if not cluster_node(size, host)
        ]
    return problems


def size_site(
    site: Site, alloc: Allocation | None = None, *, require_current: bool = False, stack: str | None = None
) -> SiteSize:
    """Size the site, or raise SiteError listing every limit it breaks.

    Racks and subnets come from the allocation record `alloc` (`fjord.sizing.alloc`), extended for what the
    spec adds and trimmed for what it removes; the result's `alloc` is that record. Without one, everything is
    allocated afresh in spec order. A change that would move a recorded cluster or tier is a SiteError. With
    `require_current` (the Pulumi program), the record must exist and already be the spec's record: a missing
    or stale one is a SiteError saying to run `fjord alloc <stack>` (`stack`: the stack's name, default the
    site's), so the program never renumbers on its own.
    """
    problems: list[Problem] = []

    shapes = [cluster_shape(c, site) for c in site.clusters]
    for i, (cluster, shape) in enumerate(zip(site.clusters, shapes, strict=True)):
        problems += _cluster_problems(i, cluster, site, shape)

    # Size on past a broken cluster (only one with no node at all cannot be sized), so that one
    # error report lists every limit the site breaks.
    sized = [
        (i, cluster, shape, _compute_fabric(site, cluster, shape))
        for i, (cluster, shape) in enumerate(zip(site.clusters, shapes, strict=True))
        if shape.nodes > 0
    ]

    total_nodes = sum(shape.nodes for _, _, shape, _ in sized)
    # The out-of-band fabric also reaches every rack-scale product's other managed devices (NVL72: 9 NVLink switch
    # trays and the power shelves per rack), one port each.
    rack_devices = sum(
        ceil((shape.nodes + shape.ufm_slots) / cluster.rack_nodes) * cluster.gpu.rack_managed_devices
        for _, cluster, shape, _ in sized
    )
    site_fabrics: list[FabricSize] = []
    roles: tuple[Literal["storage", "oob"], ...] = ("storage", "oob")
    for role in roles:
        design = site.fabric_for(role)
        devices = rack_devices if role == "oob" else 0
        ports = total_nodes * design.ports_per_node + devices
        most = max_endpoints(design.switch_model)
        if ports > most:
            j = site.fabrics.index(design)
            what = f" + {devices} rack devices" if devices else ""
            problems.append(
                Problem(
                    f"fabrics[{j}].switch",
                    design.switch,
                    f"the site's {total_nodes} nodes x {design.ports_per_node} port(s){what} = {ports} {role} ports"
                    f" exceed the {most} a three-tier {design.switch} fabric can connect; allowed: a larger-radix"
                    " switch, fewer ports per node or a smaller site",
                )
            )
        leaves = leaf_spine_leaves(design.switch_model, ports)
        site_fabrics.append(
            size_fabric(
                name=design.name,
                design=design.name,
                role=role,
                switch=design.switch_model,
                leaves=leaves,
                endpoints=ports,
                endpoint_cables=ports,
            )
        )
    cluster_demands = tuple(
        ClusterDemand(
            index=i,
            name=cluster.name,
            hall=cluster.hall,
            nodes_per_rack=cluster.rack_nodes,
            slots_per_su=shape.slots_per_su,
            rails=cluster.gpu.compute_rails,
            units=shape.scalable_units,
            slots=shape.nodes + shape.ufm_slots,
            # Every switch of the fabric stands in a network rack: leaves (beside their units' racks, as in the
            # SuperPOD layouts), spines and cores.
            network_racks=ceil(fabric.switches / SWITCHES_PER_NETWORK_RACK),
            unit_devices=cluster.gpu.rack_managed_devices * ceil(shape.slots_per_su / cluster.rack_nodes),
        )
        for i, cluster, shape, fabric in sized
    )
    # Site-wide fabrics serve every node: a fabric not yet allocated stands in the hall with the most free
    # positions once the clusters and storage tiers are in.
    free = {h.name: h.rack_positions for h in site.halls}
    for c in cluster_demands:
        free[c.hall] -= c.compute_racks + c.network_racks
    for t in site.storage:
        free[t.hall] -= t.racks
    core_hall = max(site.halls, key=lambda h: free[h.name]).name
    demand = Demand(
        site=site.name,
        clusters=cluster_demands,
        fabrics=tuple(
            RackDemand(j, f.name, core_hall, ceil(f.switches / SWITCHES_PER_NETWORK_RACK))
            for j, f in enumerate(site_fabrics)
        ),
        storage=tuple(RackDemand(j, t.name, t.hall, t.racks) for j, t in enumerate(site.storage)),
        halls={h.name: h.rack_positions for h in site.halls},
        supernets={p: getattr(site.ip_plan, p) for p in PURPOSES},
    )
    record, moves = allocate(demand, alloc)
    if moves:
        raise SiteError(moves)

    clusters = [
        _size_cluster(site, cluster, shape, fabric, record.clusters[cluster.name])
        for _, cluster, shape, fabric in sized
    ]
    placement = _placement(site, record, clusters, site_fabrics)

    for i, tier in enumerate(site.storage):
        limit = site.hall(tier.hall).rack_power_kw
        if tier.power_kw / tier.racks > limit:
            problems.append(
                Problem(
                    f"storage[{i}].power_kw",
                    tier.power_kw,
                    f"{tier.power_kw / tier.racks:.1f} kW per rack over hall {tier.hall!r}'s {limit:g} kW;"
                    f" allowed: at most {limit * tier.racks:g} kW over {tier.racks} racks",
                )
            )

    halls = tuple(
        HallUse(
            h.name,
            h.rack_positions,
            *(
                sum(r.racks for r in placement if r.hall == h.name and r.kind == k)
                for k in ("compute", "network", "storage")
            ),
        )
        for h in site.halls
    )
    for i, use in enumerate(halls):
        top = max((r.last for r in placement if r.hall == use.name), default=0)
        if use.used > use.positions or top > use.positions:
            problems.append(
                Problem(
                    f"halls[{i}].rack_positions",
                    use.positions,
                    f"hall needs {max(use.used, top)} racks ({use.compute_racks} compute, {use.network_racks} network,"
                    f" {use.storage_racks} storage); allowed: at most {use.positions} racks",
                )
            )

    pools = _pools(site, clusters)
    for pool in pools:
        if pool.requested > pool.capacity:
            problems.append(
                Problem(
                    f"ip_plan.{pool.purpose}",
                    pool.supernet,
                    f"holds {pool.capacity} addresses but {pool.subnets} subnets for {pool.addresses} interfaces"
                    f" need {pool.requested}; allowed: a supernet of /{pool.minimum_prefix} or larger",
                )
            )

    fabrics = tuple([c.fabric for c in clusters] + site_fabrics)
    power = PowerUse(
        compute_kw=sum(c.compute_kw for c in clusters),
        network_kw=sum(f.max_power_kw for f in fabrics),
        storage_kw=sum(t.power_kw for t in site.storage),
        pue=site.power.pue,
        budget_kw=site.power.grid_budget_mw * 1000,
    )
    if power.facility_kw > power.budget_kw:
        problems.append(
            Problem(
                "power.grid_budget_mw",
                site.power.grid_budget_mw,
                f"the site draws {power.facility_kw / 1000:.2f} MW (IT {power.it_kw / 1000:.2f} MW x PUE"
                f" {power.pue:g}); allowed: a budget of at least {power.facility_kw / 1000:.2f} MW or a smaller site",
            )
        )
    problems += _quota_problems(site, {c.name: c.gpus for c in clusters})
    problems += _slurm_problems(site, clusters)
    if problems:
        raise SiteError(problems)

    pool_use = tuple(PoolUse(p.purpose, p.supernet, p.subnets, p.addresses, p.capacity, p.requested) for p in pools)
    size = SiteSize(site.name, tuple(clusters), fabrics, halls, placement, pool_use, power, record)
    if site.bmc.systems:  # a lab's map of nodes to the systems of one endpoint: only this site's nodes
        names = [n.name for n in size.hosts()]
        known = set(names)
        unknown = [k for k in site.bmc.systems if k not in known]
        if unknown:
            raise SiteError(
                [
                    Problem(
                        f"bmc.systems.{k}",
                        site.bmc.systems[k],
                        f"maps {k!r}, which is no node of this site;"
                        f" allowed: its node names, {names[0]} to {names[-1]}",
                    )
                    for k in unknown
                ]
            )
    if require_current:
        _require_current(alloc, record, stack or site.name)
    return size


RUN_ALLOC = "run `fjord alloc {stack}` and commit the record it writes"


def _require_current(given: Allocation | None, record: Allocation, stack: str) -> None:
    if given is None:
        raise SiteError(
            [
                Problem(
                    "allocation record",
                    None,
                    "is missing: the program does not allocate racks and addresses on its own;"
                    f" allowed: {RUN_ALLOC.format(stack=stack)}",
                )
            ]
        )
    if given != record:
        raise SiteError(
            [
                Problem(
                    "allocation record",
                    "stale",
                    f"does not match the spec ({'; '.join(differences(given, record)) or 'racks or subnets differ'});"
                    f" allowed: {RUN_ALLOC.format(stack=stack)}",
                )
            ]
        )


@dataclass(frozen=True, slots=True)
class _PoolCount:
    purpose: str
    supernet: str
    subnets: int
    addresses: int
    capacity: int
    requested: int
    """Addresses from the supernet's start to the end of its highest subnet."""

    @property
    def minimum_prefix(self) -> int:
        """The shortest supernet prefix that would hold what was asked for."""
        return 32 - (max(self.requested, 1) - 1).bit_length()


def _pools(site: Site, clusters: list[ClusterSize]) -> list[_PoolCount]:
    """Use of each supernet: subnets and interfaces as allocated, and how far the highest subnet reaches."""
    out: list[_PoolCount] = []
    for purpose in PURPOSES:
        supernet = getattr(site.ip_plan, purpose)
        start = int(supernet.network_address)
        nets = [
            (net, u.node_count + (u.device_count if purpose == "bmc" else 0))
            for c in clusters
            for u in c.units
            for net in (u.rails if purpose == "compute" else (getattr(u, purpose),))
        ]
        top = max((n.base + (1 << (32 - n.prefix)) for n, _ in nets), default=start)
        out.append(
            _PoolCount(
                purpose,
                str(supernet),
                len(nets),
                sum(used for _, used in nets),
                supernet.num_addresses,
                top - start,
            )
        )
    return out


def _placement(
    site: Site, record: Allocation, clusters: list[ClusterSize], site_fabrics: list[FabricSize]
) -> tuple[RackRange, ...]:
    """Every rack position in use as runs of consecutive positions per owner, hall by hall in position order."""
    owned: list[tuple[str, Literal["compute", "network", "storage"], str, tuple[int, ...]]] = []
    for c in clusters:
        a = record.clusters[c.name]
        owned.append((a.hall, "compute", c.name, a.compute_racks))
        owned.append((a.hall, "network", c.fabric.name, a.network_racks))
    for f in site_fabrics:
        r = record.fabrics[f.name]
        owned.append((r.hall, "network", f.name, r.racks))
    for t in site.storage:
        r = record.storage[t.name]
        owned.append((r.hall, "storage", t.name, r.racks))
    ranges: list[RackRange] = []
    for hall, kind, owner, positions in owned:
        for run in _runs(positions):
            ranges.append(RackRange(hall, kind, owner, run[0], run[1]))
    hall_order = {h.name: i for i, h in enumerate(site.halls)}
    return tuple(sorted(ranges, key=lambda r: (hall_order.get(r.hall, len(hall_order)), r.first)))


def _runs(positions: tuple[int, ...]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return [(a, b) for a, b in runs]


def _compute_fabric(site: Site, cluster: Cluster, shape: _ClusterShape) -> FabricSize:
    sku = cluster.gpu
    design = site.fabric(cluster.compute_fabric)
    switch = design.switch_model
    rails = sku.compute_rails
    if design.topology == "rail-optimised":
        leaves = rail_optimised_leaves(switch, shape.scalable_units, shape.slots_per_su, rails)
    else:
        leaves = leaf_spine_leaves(switch, (shape.nodes + shape.ufm_slots) * rails)
    return size_fabric(
        name=f"{cluster.name}-compute",
        design=design.name,
        role="compute",
        switch=switch,
        leaves=leaves,
        endpoints=shape.nodes * rails,
        endpoint_cables=shape.nodes * rails + design.ufm_cables,
    )


def _size_cluster(
    site: Site,
    cluster: Cluster,
    shape: _ClusterShape,
    fabric: FabricSize,
    alloc: ClusterAlloc,
) -> ClusterSize:
    sku = cluster.gpu
    per_rack = cluster.rack_nodes
    rack_kw = sku.rack_max_kw if sku.rack_max_kw is not None else per_rack * sku.node_max_kw
    positions = alloc.compute_racks

    units: list[ScalableUnitSize] = []
    prefix = f"{site.name}-{cluster.name}"
    # A rack-scale product's other managed devices (NVL72: NVLink switch trays, power shelves) have BMC addresses
    # after the unit's node slots: the record's BMC subnets are sized for them (ClusterDemand.unit_devices).
    for su in range(shape.scalable_units):
        first = su * shape.slots_per_su
        count = min(shape.slots_per_su, shape.nodes - first)
        # Every unit has full-size subnets (allocation record), so a partial unit can grow without renumbering.
        recorded = alloc.units[su]
        nets = {p: _subnet(getattr(recorded, p)) for p in ("bmc", "management", "storage")}
        rail_nets = tuple(_subnet(c) for c in recorded.compute)
        last = first + count - 1
        su_racks = tuple(f"{cluster.hall}-r{positions[r]:04d}" for r in range(first // per_rack, last // per_rack + 1))
        units.append(
            ScalableUnitSize(
                cluster=cluster.name,
                index=su,
                node_count=count,
                racks=su_racks,
                subnets=recorded.subnets(),
                host_prefix=prefix,
                hall=cluster.hall,
                first_slot=first,
                rack_positions=positions,
                nodes_per_rack=per_rack,
                bmc=nets["bmc"],
                management=nets["management"],
                storage=nets["storage"],
                rails=rail_nets,
                rack_devices=sku.rack_devices,
                node_slots=shape.slots_per_su,
            )
        )
    return ClusterSize(
        name=cluster.name,
        sku=sku.name,
        tenant=cluster.tenant,
        scheduler=cluster.scheduler,
        hall=cluster.hall,
        gpus=shape.nodes * sku.gpus_per_node,
        nodes=shape.nodes,
        scalable_units=shape.scalable_units,
        nodes_per_su=shape.slots_per_su,
        nodes_per_rack=per_rack,
        racks=len(positions),
        network_racks=len(alloc.network_racks),
        rack_kw=rack_kw,
        compute_kw=shape.nodes * sku.node_max_kw,
        fabric=fabric,
        units=tuple(units),
    )


def _subnet(cidr: str) -> Subnet:
    base, _, prefix = cidr.partition("/")
    a, b, c, d = (int(x) for x in base.split("."))
    return Subnet((a << 24) | (b << 16) | (c << 8) | d, int(prefix))
