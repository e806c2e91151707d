"""Sizing against the DGX SuperPOD reference table (DESIGN.md) and hand calculations."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from fjord.sizing.fabric import size_fabric
from fjord.sizing.ipam import Allocator, Subnet, ip_range, prefix_for
from fjord.sizing.site import size_site
from fjord.spec.catalog import SWITCH_CATALOG
from fjord.spec.load import default_site, load_site

from .conftest import stack_site


def reference_site(sku: str, sus: int, ufm: bool) -> dict[str, Any]:
    """A site holding one cluster of `sus` scalable units, with room and power to spare."""
    raw = copy.deepcopy(default_site())
    raw["halls"][0].update(rack_positions=5000, rack_power_kw=60)
    raw["power"]["grid_budget_mw"] = 500
    raw["ip_plan"] = {
        "bmc": "10.0.0.0/16",
        "management": "10.1.0.0/16",
        "storage": "10.2.0.0/16",
        "compute": "10.64.0.0/12",
    }
    raw["tenants"] = [{"name": "research"}]
    fabric = raw["fabrics"][0]
    fabric.update(ufm_node_slots=1 if ufm else 0, ufm_cables=4 if ufm else 0)
    raw["clusters"][0] = {
        "name": "pod",
        "sku": sku,
        "scalable_units": sus,
        "tenant": "research",
        "scheduler": "slurm",
        "hall": "lab",
        "compute_fabric": fabric["name"],
    }
    return raw


def nvl72_reference_site(sku: str, sus: int) -> dict[str, Any]:
    """A site holding one NVL72 cluster of `sus` scalable units on an XDR fabric, in a liquid hall with room."""
    raw = reference_site(sku, sus, ufm=False)
    raw["halls"][0].update(rack_positions=5000, rack_power_kw=150, cooling="liquid")
    raw["power"]["grid_budget_mw"] = 1000
    raw["ip_plan"].update(bmc="10.0.0.0/15", management="10.2.0.0/16", storage="10.3.0.0/16")
    raw["fabrics"][0].update(technology="infiniband-xdr", switch="Q3400-RA")
    raw["software"].update(driver_branch=580, cuda="13.0")
    return raw


# The published tables (fjord.spec.catalog.SUPERPOD_SOURCES), row by row.
# SUs, nodes, GPUs, leaf, spine, core, compute+UFM cables, leaf-spine cables, spine-core cables
H100_ROWS = [  # DGX H100 RA, Table 4: one node slot per cluster goes to UFM
    (1, 31, 248, 8, 4, 0, 252, 256, 0),
    (2, 63, 504, 16, 8, 0, 508, 512, 0),
    (3, 95, 760, 24, 16, 0, 764, 768, 0),  # 24 leaves need 12 spines' ports; 16 is the fewest dividing 32 uplinks
    (4, 127, 1016, 32, 16, 0, 1020, 1024, 0),
]
B200_ROWS = [  # DGX B200 RA, larger SuperPOD component counts: no UFM slot, a core tier from 16 units
    (2, 64, 512, 16, 8, 0, 512, 512, 0),
    (4, 128, 1024, 32, 16, 0, 1024, 1024, 0),
    (8, 256, 2048, 64, 32, 0, 2048, 2048, 0),
    (16, 512, 4096, 128, 128, 64, 4096, 4096, 4096),
    (32, 1024, 8192, 256, 256, 128, 8192, 8192, 8192),
    (64, 2048, 16384, 512, 512, 256, 16384, 16384, 16384),
]
# XDR (Quantum-X800 Q3400) table: 576 endpoints per unit, which is a GB200/GB300 NVL72 unit of 144 trays x 4 NICs.
# Spines 18 and 36 where leaves x 72 uplinks / 144 ports gives 16 and 32: each leaf spreads its 72 uplinks evenly.
NVL72_ROWS = [
    (1, 144, 576, 8, 4, 0, 576, 576, 0),
    (2, 288, 1152, 16, 8, 0, 1152, 1152, 0),
    (4, 576, 2304, 32, 18, 0, 2304, 2304, 0),
    (8, 1152, 4608, 64, 36, 0, 4608, 4608, 0),
    (18, 2592, 10368, 144, 72, 0, 10368, 10368, 0),
]


@pytest.mark.parametrize(
    ("sku", "ufm", "row"),
    [("H100-SXM", True, r) for r in H100_ROWS]
    + [("B200", False, r) for r in B200_ROWS]
    + [(sku, False, r) for sku in ("GB200-NVL72", "GB300-NVL72") for r in NVL72_ROWS],
    ids=[f"H100-{r[0]}SU" for r in H100_ROWS]
    + [f"B200-{r[0]}SU" for r in B200_ROWS]
    + [f"{sku[:5]}-{r[0]}SU" for sku in ("GB200-NVL72", "GB300-NVL72") for r in NVL72_ROWS],
)
def test_superpod_reference_table(sku: str, ufm: bool, row: tuple[int, ...]) -> None:
    sus, nodes, gpus, leaf, spine, core, node_cables, leaf_spine, spine_core = row
    nvl72 = sku.endswith("NVL72")
    size = size_site(load_site(nvl72_reference_site(sku, sus) if nvl72 else reference_site(sku, sus, ufm)))
    cluster = size.clusters[0]
    fabric = cluster.fabric
    assert (cluster.scalable_units, cluster.nodes, cluster.gpus) == (sus, nodes, gpus)
    assert (fabric.leaves, fabric.spines, fabric.cores) == (leaf, spine, core)
    assert fabric.endpoint_cables == node_cables
    assert fabric.leaf_spine_cables == leaf_spine
    assert fabric.spine_core_cables == spine_core
    assert fabric.tiers == (3 if core else 2)


def test_cluster_sized_in_gpus_matches_units() -> None:
    raw = reference_site("H100-SXM", 2, ufm=True)
    del raw["clusters"][0]["scalable_units"]
    raw["clusters"][0]["gpus"] = 504
    cluster = size_site(load_site(raw)).clusters[0]
    assert (cluster.scalable_units, cluster.nodes, cluster.fabric.leaves) == (2, 63, 16)


def test_dev_site_by_hand() -> None:
    size = size_site(load_site(default_site()))
    (cluster,) = size.clusters
    # 32 H100 GPUs = 4 nodes of 8; one rail-optimised SU scaffold: 8 leaves (one per rail), 8x32/64 = 4 spines.
    assert (cluster.nodes, cluster.scalable_units, cluster.racks) == (4, 1, 1)
    assert (cluster.fabric.leaves, cluster.fabric.spines, cluster.fabric.endpoint_cables) == (8, 4, 32)
    storage, oob = size.fabrics[1:]
    assert (storage.leaves, storage.spines, storage.endpoint_cables) == (1, 0, 8)  # 4 nodes x 2 ports
    assert (oob.leaves, oob.endpoint_cables) == (1, 4)
    # Power: 4 x 10.2 kW nodes; 12 QM9700 x 1.72 kW + SN4600C 0.8 kW + SN2201 0.1 kW; 12 kW of storage.
    assert size.power.compute_kw == pytest.approx(40.8)
    assert size.power.network_kw == pytest.approx(12 * 1.72 + 0.8 + 0.1)
    assert size.power.it_kw == pytest.approx(40.8 + 21.54 + 12)
    assert size.power.facility_kw == pytest.approx((40.8 + 21.54 + 12) * 1.3)
    assert size.power.headroom_kw == pytest.approx(1000 - (40.8 + 21.54 + 12) * 1.3)
    # Racks: 1 compute, 1 for the 4 spines, 1 each for the storage and OOB leaves, 1 storage rack.
    assert [(h.compute_racks, h.network_racks, h.storage_racks) for h in size.halls] == [(1, 3, 1)]
    # Addresses: bmc, management, storage and 8 rails per node.
    assert size.addresses == 4 * (3 + 8)


def test_dev_inventory_addresses_by_hand() -> None:
    hosts = size_site(load_site(default_site())).hosts()
    first, last = hosts[0], hosts[-1]
    assert first.name == "dev-h100-su000-n000"
    assert (first.bmc, first.management, first.storage) == ("10.0.0.2", "10.0.4.2", "10.0.8.2")
    # Each rail gets a /26 per SU (32 slots + network, gateway, broadcast): 10.1.0.0/26, 10.1.0.64/26, ...
    assert first.compute == tuple(f"10.1.{(r * 64) // 256}.{(r * 64) % 256 + 2}" for r in range(8))
    assert last.bmc == "10.0.0.5"
    assert {h.rack for h in hosts} == {"lab-r0001"}


def test_ipam_prefixes_and_alignment() -> None:
    assert prefix_for(32) == 26  # 35 addresses -> 64
    assert prefix_for(61) == 26  # exactly 64
    assert prefix_for(62) == 25
    assert prefix_for(144) == 24
    alloc = Allocator("t", ipaddress.IPv4Network("10.0.0.0/22"))
    a = alloc.allocate(32)
    b = alloc.allocate(200)
    assert (a.cidr, b.cidr) == ("10.0.0.0/26", "10.0.1.0/24")  # b aligned up to its own size
    assert b.gateway == "10.0.1.1"
    assert b.host(0) == "10.0.1.2"
    alloc.allocate(200)
    alloc.allocate(200)
    assert not alloc.overflow  # four blocks fill the /22 exactly
    alloc.allocate(200)
    assert alloc.overflow
    assert alloc.minimum_prefix() == 21


@pytest.mark.parametrize(
    ("start", "count"),
    [("10.0.0.2", 0), ("10.0.0.2", 1), ("10.0.0.250", 10), ("10.0.255.200", 400), ("10.255.255.250", 20)],
)
def test_ip_range_formats_like_ipaddress_across_octet_boundaries(start: str, count: int) -> None:
    first = int(ipaddress.IPv4Address(start))
    assert ip_range(first, count) == [str(ipaddress.IPv4Address(first + i)) for i in range(count)]


def test_subnet_hosts_in_bulk_equal_host_by_host() -> None:
    net = Subnet(int(ipaddress.IPv4Address("10.64.3.0")), 22)
    assert net.hosts(700) == [net.host(j) for j in range(700)]


@pytest.mark.parametrize("stack", ["uk", "narvik"])
def test_unit_nodes_take_the_jth_address_of_every_subnet(stack: str) -> None:
    """Nodes are built column by column (Subnet.hosts); node j still has host j of each of its unit's subnets."""
    size = size_site(load_site(stack_site(stack)))
    for cluster in size.clusters:
        for unit in (cluster.units[0], cluster.units[-1]):
            for j, n in enumerate(unit.nodes()):
                assert (n.bmc, n.management, n.storage) == (
                    unit.bmc.host(j),
                    unit.management.host(j),
                    unit.storage.host(j),
                )
                assert n.compute == tuple(rail.host(j) for rail in unit.rails)
                assert n.name == f"{unit.host_prefix}-su{unit.index:03d}-n{j:03d}"
                assert (n.cluster, n.scalable_unit, n.hall) == (cluster.name, unit.index, unit.hall)


def test_fabric_single_leaf_needs_no_spine() -> None:
    f = size_fabric(
        name="x",
        design="x",
        role="storage",
        switch=SWITCH_CATALOG["SN4600C"],
        leaves=1,
        endpoints=10,
        endpoint_cables=10,
    )
    assert (f.tiers, f.spines, f.cores, f.cables) == (1, 0, 0, 10)


@pytest.mark.parametrize("stack", ["dev", "uk", "narvik"])
def test_inventory_is_unique_and_inside_supernets(stack: str) -> None:
    raw = default_site() if stack == "dev" else stack_site(stack)
    site = load_site(raw)
    size = size_site(site)
    hosts = size.hosts()
    assert len(hosts) == size.nodes
    assert len({h.name for h in hosts}) == len(hosts)
    nets = {
        p: ipaddress.IPv4Network(str(getattr(site.ip_plan, p))) for p in ("bmc", "management", "storage", "compute")
    }
    seen: set[str] = set()
    for h in hosts:
        for purpose, addrs in (
            ("bmc", [h.bmc]),
            ("management", [h.management]),
            ("storage", [h.storage]),
            ("compute", list(h.compute)),
        ):
            for a in addrs:
                assert ipaddress.IPv4Address(a) in nets[purpose], (h.name, purpose, a)
                assert a not in seen, (h.name, a)
                seen.add(a)
    for d in size.devices():  # NVL72 NVLink switch trays and power shelves: a BMC address each
        assert ipaddress.IPv4Address(d.bmc) in nets["bmc"], (d.name, d.bmc)
        assert d.bmc not in seen, (d.name, d.bmc)
        seen.add(d.bmc)
    assert len(seen) == size.addresses


def test_narvik_full_build_out() -> None:
    size = size_site(load_site(stack_site("narvik")))
    assert size.gpus >= 100_000
    assert size.power.facility_kw <= 230_000
    assert all(h.used <= h.positions for h in size.halls)
    # NVL72: 18 trays of 4 GPUs per rack, 8 racks (144 trays) per scalable unit.
    for c in size.clusters:
        assert c.racks == c.gpus // 72
        assert c.scalable_units == -(-c.nodes // 144)


def test_uk_two_halls_of_hgx() -> None:
    site = load_site(stack_site("uk"))
    size = size_site(site)
    assert {c.hall for c in size.clusters} == {"hall-1", "hall-2"}
    assert {site.clusters[i].gpu.form_factor for i in range(len(site.clusters))} == {"hgx"}
    b200 = next(c for c in size.clusters if c.name == "b200")
    # 4,096 B200 GPUs are the 16-SU row of the B200 SuperPOD reference: 128 leaf, 128 spine, 64 core.
    assert (b200.fabric.leaves, b200.fabric.spines, b200.fabric.cores) == (128, 128, 64)


def test_breakout_radix_keeps_16_units_on_two_tiers() -> None:
    """Spectrum-X SN5600 cabled 2:1 as 128 x 400G: 16 SUs of B200 (128 leaves) still fit two tiers."""
    raw = reference_site("B200", 16, ufm=False)
    raw["fabrics"][0].update(technology="spectrum-x", switch="SN5600", radix=128)
    fabric = size_site(load_site(raw)).clusters[0].fabric
    assert (fabric.tiers, fabric.leaves, fabric.spines, fabric.cores) == (2, 128, 64, 0)
    assert fabric.leaf_spine_cables == 128 * 64
    native = reference_site("B200", 16, ufm=False)
    native["fabrics"][0].update(technology="spectrum-x", switch="SN5600")
    assert size_site(load_site(native)).clusters[0].fabric.tiers == 3


def test_unit_subnets_hold_their_nodes_addresses() -> None:
    """A ScalableUnit registers its subnets, not its hosts: every node address must follow from them."""
    size = size_site(load_site(stack_site("uk")))
    for cluster in size.clusters:
        for unit in cluster.units:
            nets = {k: ipaddress.IPv4Network(v) for k, v in unit.subnets.items()}
            nodes = unit.nodes()
            assert len(nodes) == unit.node_count
            assert {n.rack for n in nodes} == set(unit.racks)
            for n in nodes:
                assert ipaddress.IPv4Address(n.bmc) in nets["bmc"]
                assert ipaddress.IPv4Address(n.management) in nets["management"]
                assert ipaddress.IPv4Address(n.storage) in nets["storage"]
                for r, addr in enumerate(n.compute):
                    assert ipaddress.IPv4Address(addr) in nets[f"compute-r{r}"]


@pytest.mark.parametrize("stack", ["dev", "uk", "narvik"])
def test_rack_placement_is_contiguous_and_matches_halls(stack: str) -> None:
    raw = default_site() if stack == "dev" else stack_site(stack)
    size = size_site(load_site(raw))
    for hall in size.halls:
        ranges = [r for r in size.placement if r.hall == hall.name]
        assert [r.first for r in ranges] == [1] + [r.last + 1 for r in ranges[:-1]]  # no gap, no overlap
        assert sum(r.racks for r in ranges) == hall.used <= hall.positions
        kinds = [r.kind for r in ranges]
        assert kinds == sorted(kinds, key=["compute", "network", "storage"].index)
    # Node racks are exactly the compute ranges of their cluster.
    for cluster in size.clusters:
        (compute,) = [r for r in size.placement if r.kind == "compute" and r.owner == cluster.name]
        node_racks = {n.rack for u in cluster.units for n in u.nodes()}
        assert node_racks == {f"{compute.hall}-r{i:04d}" for i in range(compute.first, compute.last + 1)}


def test_a_leaf_only_switch_uplinks_to_its_spine_model() -> None:
    """An SN2201 has 4 uplinks: it is never a spine (it was, with all 52 ports); its spines are SN4600C."""
    oob = SWITCH_CATALOG["SN2201"]
    assert oob.spine == "SN4600C"
    two = size_fabric(name="o", design="o", role="oob", switch=oob, leaves=14, endpoints=639, endpoint_cables=639)
    # 14 leaves x 4 uplinks = 56 ports: one 64-port SN4600C, which divides the 4 uplinks.
    assert (two.tiers, two.spines, two.cores, two.spine_switch) == (2, 1, 0, "SN4600C")
    assert two.max_power_kw == pytest.approx((14 * 100 + 800) / 1000)
    size = size_site(load_site(stack_site("narvik")))
    narvik_oob = next(f for f in size.fabrics if f.role == "oob")
    # 525 leaves > 64 ports of a spine: three tiers of SN4600C, 32 ports down per spine.
    assert (narvik_oob.switch, narvik_oob.spine_switch, narvik_oob.tiers) == ("SN2201", "SN4600C", 3)
    assert narvik_oob.spines == -(-narvik_oob.leaves * 4 // 32)
    assert narvik_oob.cores == -(-narvik_oob.spines * 32 // 64)


def test_every_two_tier_spine_count_takes_the_uplinks_evenly() -> None:
    for sw in SWITCH_CATALOG.values():
        spine = SWITCH_CATALOG[sw.spine] if sw.spine else sw
        for leaves in range(2, spine.radix + 1):
            f = size_fabric(
                name="f", design="f", role="compute", switch=sw, leaves=leaves, endpoints=0, endpoint_cables=0
            )
            assert sw.leaf_uplinks % f.spines == 0, (sw.name, leaves, f.spines)
            assert f.spines * spine.radix >= f.leaf_spine_cables, (sw.name, leaves)
            fewer = [d for d in range(1, f.spines) if sw.leaf_uplinks % d == 0]
            assert all(d * spine.radix < f.leaf_spine_cables for d in fewer), (sw.name, leaves)


def test_nvl72_switch_trays_and_power_shelves_get_an_oob_port_and_a_bmc_address() -> None:
    """An NVL72 rack has 9 NVLink switch trays and 8 power shelves besides its 18 compute trays, each managed over
    its BMC (SUPERPOD_SOURCES["NVL72"]): they used to get neither an out-of-band port nor an address."""
    from fjord.spec.catalog import GPU_CATALOG, NVL72_POWER_SHELVES, NVL72_SWITCH_TRAYS

    assert GPU_CATALOG["GB300-NVL72"].rack_managed_devices == NVL72_SWITCH_TRAYS + NVL72_POWER_SHELVES == 17
    size = size_site(load_site(nvl72_reference_site("GB300-NVL72", 2)))
    (cluster,) = size.clusters
    oob = next(f for f in size.fabrics if f.role == "oob")
    assert cluster.racks == 16
    assert oob.endpoint_cables == oob.endpoints == 288 + 16 * 17
    unit = cluster.units[0]
    devices = unit.devices()
    assert len(devices) == 8 * 17
    assert [d.kind for d in devices[:17]] == ["nvswitch"] * 9 + ["power-shelf"] * 8
    assert devices[0].name == f"{unit.racks[0]}-nvswitch-1"
    assert devices[16].name == f"{unit.racks[0]}-power-shelf-8"
    assert {d.rack for d in devices} == set(unit.racks)
    subnet = ipaddress.IPv4Network(unit.subnets["bmc"])
    trays = {n.bmc for n in unit.nodes()}
    # The trays keep the unit's first addresses; the devices follow them, inside the same subnet.
    assert max(ipaddress.IPv4Address(a) for a in trays) < min(ipaddress.IPv4Address(d.bmc) for d in devices)
    assert all(ipaddress.IPv4Address(d.bmc) in subnet for d in devices)
    assert subnet.prefixlen == 23  # 144 trays + 136 devices + 3 reserved > 256
    assert len({d.bmc for d in devices} | trays) == 144 + 136
    assert all(len(d.name) <= 63 for d in size.devices())
    # HGX nodes have no such devices.
    assert size_site(load_site(default_site())).devices() == []


def test_compute_leaves_stand_in_network_racks() -> None:
    """Every switch of a cluster's fabric is placed: its leaves as well as its spines and cores (the leaves were in
    no rack)."""
    for stack in ("uk", "narvik"):
        size = size_site(load_site(stack_site(stack)))
        for c in size.clusters:
            assert c.network_racks == -(-(c.fabric.leaves + c.fabric.spines + c.fabric.cores) // 16), c.name
    uk = {c.name: c for c in size_site(load_site(stack_site("uk"))).clusters}
    assert uk["h200"].network_racks == 3  # 32 leaves + 16 spines


def test_the_ip_plan_shows_what_its_subnets_reserve() -> None:
    """Each unit's subnets are whole powers of two sized for a full unit, aligned: the report shows the addresses they
    take (reserved) beside the interfaces that have one (addresses)."""
    size = size_site(load_site(default_site()))
    pools = {p.purpose: p for p in size.pools}
    # One 4-node unit of a 32-slot unit: a /26 per purpose, 8 of them for the compute rails.
    assert (pools["bmc"].addresses, pools["bmc"].reserved) == (4, 64)
    assert (pools["compute"].addresses, pools["compute"].reserved) == (32, 8 * 64)
    narvik = size_site(load_site(stack_site("narvik")))
    for p in narvik.pools:
        assert p.addresses <= p.reserved <= p.capacity
    bmc = next(p for p in narvik.pools if p.purpose == "bmc")
    assert bmc.reserved == 176 * 512  # a /23 per NVL72 unit: 144 trays + 136 devices
    mixed = reference_site("H100-SXM", 1, ufm=False)
    mixed["halls"][0]["cooling"] = "liquid"
    mixed["halls"][0]["rack_power_kw"] = 150
    mixed["software"].update(driver_branch=580, cuda="13.0")
    mixed["clusters"].append(mixed["clusters"][0] | {"name": "nvl", "sku": "GB300-NVL72", "scalable_units": 1})
    mixed["tenants"] = [{"name": "research"}]
    pools = {p.purpose: p for p in size_site(load_site(mixed)).pools}
    # The H100 unit's /26, then the NVL72 unit's /23 aligned to 512: the gap between them is reserved too.
    assert pools["bmc"].reserved == 512 + 512


def test_a_record_whose_bmc_subnets_cannot_hold_the_rack_devices_is_a_move() -> None:
    """A unit recorded before its racks' devices had addresses keeps its /24: giving them addresses would renumber
    its BMCs, so the allocation refuses it, naming the cluster, rather than number devices outside the subnet."""
    from fjord.sizing.alloc import ClusterDemand, Demand, allocate

    def demand(devices: int) -> Demand:
        cluster = ClusterDemand(0, "nvl", "hall", 18, 144, 4, 2, 288, 2, unit_devices=devices)
        supernets = {p: ipaddress.IPv4Network(n) for p, n in (("bmc", "10.0.0.0/16"), ("management", "10.1.0.0/16"))}
        supernets |= {"storage": ipaddress.IPv4Network("10.2.0.0/16"), "compute": ipaddress.IPv4Network("10.8.0.0/14")}
        return Demand("s", (cluster,), (), (), {"hall": 100}, supernets)

    old, moves = allocate(demand(0))
    assert moves == []
    assert old.clusters["nvl"].units[0].bmc == "10.0.0.0/24"
    new, fresh = allocate(demand(136))
    assert fresh == []
    assert new.clusters["nvl"].units[0].bmc == "10.0.0.0/23"
    _, refused = allocate(demand(136), old)
    assert [p.path for p in refused] == ["clusters[0].sku"]
    assert "cannot hold a unit's 144 node slots and the 136 managed devices" in refused[0].message
