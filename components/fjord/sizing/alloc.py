"""The allocation record: where every cluster's racks and every scalable unit's subnets are, once given.

Sizing derives racks and addresses from the spec. Without a record, a derivation in spec order moves
everything behind a change: one more unit in a cluster shifts the racks and subnets of every cluster after
it. The record pins what was allocated, like a lock file pins versions:

- a cluster keeps its hall, its compute rack positions (slot k stands in the rack at position k // per rack)
  and one set of subnets per scalable unit (bmc, management, storage, one per compute rail);
- a cluster's network racks, each site fabric's racks and each storage tier's racks keep their positions.

`allocate(demand, previous)` returns the record for a spec: what `previous` holds and the spec still needs
stays exactly where it is; what the spec no longer needs is released (trailing racks, trailing units, whole
owners); what is new is carved from free space, after the highest position or address in use (released
space is reused only once a hall or a supernet has no room left above). With no previous record it
allocates in spec order, which is the layout sizing always gave, so a site built before the record existed
gets the record of what it has.

What cannot be kept (a cluster moved to another hall, a different rack density or SKU shape, a supernet that
no longer holds a recorded subnet) is a move; `allocate` reports each as a Problem and never moves anything.

Pure: dataclasses in, dataclasses out; the YAML form (`dump`, `parse`) is plain text for review.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fjord.sizing.ipam import Subnet, prefix_for
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import ALLOC_SUFFIX, SAFE_LOADER

RECORD_VERSION = 1
PURPOSES = ("bmc", "management", "storage")
"""Per-unit subnets besides the compute rails."""


@dataclass(frozen=True, slots=True)
class UnitAlloc:
    """One scalable unit's subnets (CIDRs)."""

    bmc: str
    management: str
    storage: str
    compute: tuple[str, ...]
    """One per compute rail, rail 0 first."""

    def subnets(self) -> dict[str, str]:
        """Purpose -> CIDR, rails as compute-r0, compute-r1, ... (ScalableUnitSize.subnets)."""
        return {
            "bmc": self.bmc,
            "management": self.management,
            "storage": self.storage,
            **{f"compute-r{r}": c for r, c in enumerate(self.compute)},
        }


@dataclass(frozen=True, slots=True)
class RackAlloc:
    """Rack positions (counted from 1) of one owner in one hall, in the order the owner fills them."""

    hall: str
    racks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClusterAlloc:
    hall: str
    nodes_per_rack: int
    slots_per_su: int
    rails: int
    compute_racks: tuple[int, ...]
    """Node slot k stands in the rack at position compute_racks[k // nodes_per_rack]."""
    network_racks: tuple[int, ...]
    """Racks of the cluster's compute fabric (spines and cores), in the same hall."""
    units: tuple[UnitAlloc, ...]
    """Unit i's subnets at index i."""


@dataclass(frozen=True, slots=True)
class Allocation:
    site: str
    clusters: Mapping[str, ClusterAlloc] = field(default_factory=dict)
    fabrics: Mapping[str, RackAlloc] = field(default_factory=dict)
    """Racks of the site-wide fabrics (storage, OOB), by fabric name."""
    storage: Mapping[str, RackAlloc] = field(default_factory=dict)
    """Racks of each storage tier, by tier name."""

    def as_doc(self) -> dict[str, Any]:
        """The record as plain data, in a fixed order (what `dump` writes)."""
        return {
            "version": RECORD_VERSION,
            "site": self.site,
            "clusters": {
                name: {
                    "hall": c.hall,
                    "nodes_per_rack": c.nodes_per_rack,
                    "slots_per_su": c.slots_per_su,
                    "rails": c.rails,
                    "compute_racks": ranges(c.compute_racks),
                    "network_racks": ranges(c.network_racks),
                    "units": [
                        {"bmc": u.bmc, "management": u.management, "storage": u.storage, "compute": list(u.compute)}
                        for u in c.units
                    ],
                }
                for name, c in sorted(self.clusters.items())
            },
            "fabrics": {n: {"hall": r.hall, "racks": ranges(r.racks)} for n, r in sorted(self.fabrics.items())},
            "storage": {n: {"hall": r.hall, "racks": ranges(r.racks)} for n, r in sorted(self.storage.items())},
        }


# Demand: what the spec needs, computed by sizing.


@dataclass(frozen=True, slots=True)
class ClusterDemand:
    index: int
    """Position in the spec's clusters (for field paths in problems)."""
    name: str
    hall: str
    nodes_per_rack: int
    slots_per_su: int
    rails: int
    units: int
    slots: int
    """Node slots in use: nodes plus UFM slots."""
    network_racks: int
    unit_devices: int = 0
    """BMC addresses a full unit needs besides its node slots: the managed devices of its racks (an NVL72 rack's
    NVLink switch trays and power shelves). A unit's BMC subnet holds both."""

    @property
    def compute_racks(self) -> int:
        return -(-self.slots // self.nodes_per_rack)


@dataclass(frozen=True, slots=True)
class RackDemand:
    index: int
    name: str
    hall: str
    racks: int


@dataclass(frozen=True, slots=True)
class Demand:
    """What a spec needs, in spec order: the input of `allocate`."""

    site: str
    clusters: tuple[ClusterDemand, ...]
    fabrics: tuple[RackDemand, ...]
    """Site-wide fabrics; `hall` is where a fabric not yet recorded goes."""
    storage: tuple[RackDemand, ...]
    halls: Mapping[str, int]
    """Hall -> rack positions it has."""
    supernets: Mapping[str, ipaddress.IPv4Network]
    """bmc, management, storage, compute -> the supernet."""


class _Racks:
    """Rack positions of every hall: next-fit above the highest position in use, then first-fit into gaps."""

    def __init__(self, halls: Mapping[str, int]) -> None:
        self.size = dict(halls)
        self.used: dict[str, set[int]] = {h: set() for h in halls}
        self.top: dict[str, int] = dict.fromkeys(halls, 0)

    def keep(self, hall: str, positions: Iterable[int]) -> None:
        used = self.used.setdefault(hall, set())
        for p in positions:
            used.add(p)
            self.top[hall] = max(self.top.get(hall, 0), p)

    def take(self, hall: str, count: int) -> list[int]:
        got: list[int] = []
        used = self.used.setdefault(hall, set())
        size = self.size.get(hall, 0)
        while len(got) < count:
            top = self.top.get(hall, 0)
            # Above the highest rack while the hall has room; then a released position, lowest first; with none
            # left, past the hall's end, which sizing reports as a hall over its positions.
            pos = top + 1 if top < size else next((p for p in range(1, size + 1) if p not in used), top + 1)
            used.add(pos)
            self.top[hall] = max(top, pos)
            got.append(pos)
        return got


class _Pool:
    """One purpose's supernet: aligned subnets next-fit above the highest in use, then first-fit into gaps."""

    def __init__(self, supernet: ipaddress.IPv4Network) -> None:
        self.start = int(supernet.network_address)
        self.end = self.start + supernet.num_addresses
        self.taken: list[tuple[int, int]] = []
        self.top = self.start

    def keep(self, net: Subnet) -> None:
        end = net.base + (1 << (32 - net.prefix))
        self.taken.append((net.base, end))
        self.top = max(self.top, end)

    def take(self, prefix: int) -> Subnet:
        size = 1 << (32 - prefix)
        base = -(-self.top // size) * size
        if base + size > self.end:
            gap = self._first_fit(size)
            if gap is not None:
                base = gap
        net = Subnet(base, prefix)
        self.keep(net)
        return net

    def _first_fit(self, size: int) -> int | None:
        base = self.start
        for lo, hi in sorted(self.taken):
            if base + size <= lo:
                return base
            base = max(base, -(-hi // size) * size)
        return base if base + size <= self.end else None


def _subnet(cidr: str) -> Subnet:
    net = ipaddress.IPv4Network(cidr)
    return Subnet(int(net.network_address), net.prefixlen)


def allocate(demand: Demand, previous: Allocation | None = None) -> tuple[Allocation, list[Problem]]:
    """The record for `demand`, keeping everything of `previous` it still needs (see the module docstring).

    Returns the record and the moves it refused: each a Problem naming the spec field, its value and what
    would keep the allocation. With moves the record keeps the recorded cluster or tier as it was.
    """
    prev = previous or Allocation(demand.site)
    moves: list[Problem] = []
    racks = _Racks(demand.halls)
    pools = {p: _Pool(net) for p, net in demand.supernets.items()}

    # 1. What is kept: every recorded owner still in the spec, trimmed to what it still needs.
    kept: dict[str, ClusterAlloc] = {}
    for c in demand.clusters:
        old = prev.clusters.get(c.name)
        if old is None:
            continue
        conflict = _cluster_moves(c, old)
        if conflict:
            moves += conflict
            # Keep the record as it is (nothing moves); the caller rejects the spec.
            kept[c.name] = old
            racks.keep(old.hall, (*old.compute_racks, *old.network_racks))
            for u in old.units:
                _keep_unit(pools, u)
            continue
        trimmed = ClusterAlloc(
            hall=old.hall,
            nodes_per_rack=old.nodes_per_rack,
            slots_per_su=old.slots_per_su,
            rails=old.rails,
            compute_racks=old.compute_racks[: c.compute_racks],
            network_racks=old.network_racks[: c.network_racks],
            units=old.units[: c.units],
        )
        kept[c.name] = trimmed
        racks.keep(old.hall, (*trimmed.compute_racks, *trimmed.network_racks))
        for u in trimmed.units:
            _keep_unit(pools, u)
    kept_fabrics: dict[str, RackAlloc] = {}
    for f in demand.fabrics:
        old_f = prev.fabrics.get(f.name)
        if old_f is not None:
            kept_fabrics[f.name] = RackAlloc(old_f.hall, old_f.racks[: f.racks])
            racks.keep(old_f.hall, kept_fabrics[f.name].racks)
    kept_storage: dict[str, RackAlloc] = {}
    for t in demand.storage:
        old_t = prev.storage.get(t.name)
        if old_t is None:
            continue
        if old_t.hall != t.hall:
            moves.append(
                Problem(
                    f"storage[{t.index}].hall",
                    t.hall,
                    f"storage tier {t.name!r} stands in {old_t.hall} (allocation record); moving it is a rebuild;"
                    f" allowed: {old_t.hall!r}, or a new tier under another name",
                )
            )
            kept_storage[t.name] = old_t
        else:
            kept_storage[t.name] = RackAlloc(old_t.hall, old_t.racks[: t.racks])
        racks.keep(old_t.hall, kept_storage[t.name].racks)
    for purpose, pool in pools.items():
        moves += _outside(purpose, pool, demand.supernets[purpose], kept)

    # 2. What is new, in the order sizing always placed it: compute racks, network racks, site fabrics, storage.
    compute = {c.name: list(kept[c.name].compute_racks) if c.name in kept else [] for c in demand.clusters}
    network = {c.name: list(kept[c.name].network_racks) if c.name in kept else [] for c in demand.clusters}
    for c in demand.clusters:
        hall = kept[c.name].hall if c.name in kept else c.hall
        compute[c.name] += racks.take(hall, c.compute_racks - len(compute[c.name]))
    for c in demand.clusters:
        hall = kept[c.name].hall if c.name in kept else c.hall
        network[c.name] += racks.take(hall, c.network_racks - len(network[c.name]))
    fabrics: dict[str, RackAlloc] = {}
    for f in demand.fabrics:
        have = kept_fabrics.get(f.name) or RackAlloc(f.hall, ())
        fabrics[f.name] = RackAlloc(have.hall, (*have.racks, *racks.take(have.hall, f.racks - len(have.racks))))
    storage: dict[str, RackAlloc] = {}
    for t in demand.storage:
        have = kept_storage.get(t.name) or RackAlloc(t.hall, ())
        storage[t.name] = RackAlloc(have.hall, (*have.racks, *racks.take(have.hall, t.racks - len(have.racks))))

    clusters: dict[str, ClusterAlloc] = {}
    for c in demand.clusters:
        old = kept.get(c.name)
        units = list(old.units) if old is not None else []
        prefix = prefix_for(c.slots_per_su)
        bmc_prefix = prefix_for(c.slots_per_su + c.unit_devices)
        for _ in range(len(units), c.units):
            nets = {p: pools[p].take(bmc_prefix if p == "bmc" else prefix).cidr for p in PURPOSES}
            rails = tuple(pools["compute"].take(prefix).cidr for _ in range(c.rails))
            units.append(UnitAlloc(nets["bmc"], nets["management"], nets["storage"], rails))
        clusters[c.name] = ClusterAlloc(
            hall=old.hall if old is not None else c.hall,
            nodes_per_rack=old.nodes_per_rack if old is not None else c.nodes_per_rack,
            slots_per_su=old.slots_per_su if old is not None else c.slots_per_su,
            rails=old.rails if old is not None else c.rails,
            compute_racks=tuple(compute[c.name]),
            network_racks=tuple(network[c.name]),
            units=tuple(units),
        )
    return Allocation(demand.site, clusters, fabrics, storage), moves


def _keep_unit(pools: Mapping[str, _Pool], unit: UnitAlloc) -> None:
    for p in PURPOSES:
        pools[p].keep(_subnet(getattr(unit, p)))
    for c in unit.compute:
        pools["compute"].keep(_subnet(c))


def _cluster_moves(c: ClusterDemand, old: ClusterAlloc) -> list[Problem]:
    """Changes that would move a recorded cluster's nodes: refused, each naming the field."""
    moves: list[Problem] = []
    what = f"cluster {c.name!r}'s nodes"
    if old.hall != c.hall:
        moves.append(
            Problem(
                f"clusters[{c.index}].hall",
                c.hall,
                f"{what} stand in {old.hall} (allocation record); moving them is a rebuild;"
                f" allowed: {old.hall!r}, or a new cluster under another name",
            )
        )
    if old.nodes_per_rack != c.nodes_per_rack:
        moves.append(
            Problem(
                f"clusters[{c.index}].nodes_per_rack",
                c.nodes_per_rack,
                f"{what} stand {old.nodes_per_rack} to a rack (allocation record); another density moves them"
                f" between racks; allowed: {old.nodes_per_rack}, or a new cluster under another name",
            )
        )
    bmc_prefix = prefix_for(c.slots_per_su + c.unit_devices)
    small = [u.bmc for u in old.units if int(u.bmc.partition("/")[2]) > bmc_prefix]
    if small:
        moves.append(
            Problem(
                f"clusters[{c.index}].sku",
                c.name,
                f"cluster {c.name!r}: the BMC subnets of its units ({small[0]}, allocation record) cannot hold a"
                f" unit's {c.slots_per_su} node"
                f" slots and the {c.unit_devices} managed devices of its racks; allowed: a record whose BMC subnets"
                f" are /{bmc_prefix} (renumbering the unit's BMCs: re-record it with `fjord alloc`)",
            )
        )
    if (old.slots_per_su, old.rails) != (c.slots_per_su, c.rails):
        moves.append(
            Problem(
                f"clusters[{c.index}].sku",
                c.name,
                f"{what} have {old.slots_per_su} slots per unit and {old.rails} compute rails (allocation record);"
                f" this SKU has {c.slots_per_su} and {c.rails}, which renumbers every unit;"
                " allowed: a SKU of the same shape, or a new cluster under another name",
            )
        )
    return moves


def _outside(
    purpose: str, pool: _Pool, supernet: ipaddress.IPv4Network, kept: Mapping[str, ClusterAlloc]
) -> list[Problem]:
    """Recorded subnets the (changed) supernet no longer holds: those addresses would move."""
    lo, hi = pool.start, pool.end
    for name, c in kept.items():
        for i, u in enumerate(c.units):
            for cidr in (getattr(u, purpose),) if purpose != "compute" else u.compute:
                net = _subnet(cidr)
                if net.base < lo or net.base + (1 << (32 - net.prefix)) > hi:
                    return [
                        Problem(
                            f"ip_plan.{purpose}",
                            str(supernet),
                            f"does not hold {cidr}, the {purpose} subnet of {name}-su{i:03d} (allocation record);"
                            " its addresses would move; allowed: a supernet that holds every recorded subnet",
                        )
                    ]
    return []


# The record as text: `stacks/Pulumi.<stack>.alloc.yaml`.

HEADER = (
    "# Allocation record of stack {stack}: where every rack and subnet of the site is.\n"
    "# Written by `fjord alloc {stack}`; commit it with the stack file. The program refuses to run when it\n"
    "# is missing or does not match the spec, so that no change of the spec renumbers a node.\n"
    "# Racks are hall positions, in the order the owner fills them; units are indexed from 0.\n"
)


def alloc_path(stack: str, folder: Path) -> Path:
    return folder / f"Pulumi.{stack}{ALLOC_SUFFIX}"


def ranges(positions: Sequence[int]) -> str:
    """Positions as runs, in their order: (1, 2, 3, 7, 5) -> '1-3,7,5'."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def parse_ranges(text: str, path: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in filter(None, (s.strip() for s in str(text).split(","))):
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()) or (b and int(b) < int(a)):
            raise SiteError([Problem(path, text, "is not a list of rack positions; allowed: runs such as '1-32,40'")])
        out += range(int(a), int(b or a) + 1)
    return tuple(out)


class _Dumper(yaml.SafeDumper):
    """Block style with indented sequences (yamllint's default), so the record reads like the stack files."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump(alloc: Allocation, stack: str) -> str:
    """The record as YAML text with a header; `parse(dump(a)) == a`."""
    body = yaml.dump(alloc.as_doc(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=110)
    return HEADER.format(stack=stack) + body


def parse(text: str, source: str) -> Allocation:
    """Read a record written by `dump`; raise SiteError naming what is wrong."""
    try:
        doc = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise SiteError([Problem("", source, f"is not valid YAML: {str(exc).splitlines()[0]}")], source) from None
    try:
        return from_doc(doc)
    except SiteError as exc:
        raise SiteError(exc.problems, source) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = Problem(
            "", type(exc).__name__, f"not an allocation record ({exc}); allowed: the file `fjord alloc` writes"
        )
        raise SiteError([problem], source) from None


def from_doc(doc: Any) -> Allocation:
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        version = doc.get("version") if isinstance(doc, dict) else type(doc).__name__
        raise SiteError([Problem("version", version, f"unknown record version; allowed: {RECORD_VERSION}")])
    clusters = {
        str(name): ClusterAlloc(
            hall=str(c["hall"]),
            nodes_per_rack=int(c["nodes_per_rack"]),
            slots_per_su=int(c["slots_per_su"]),
            rails=int(c["rails"]),
            compute_racks=parse_ranges(c["compute_racks"], f"clusters.{name}.compute_racks"),
            network_racks=parse_ranges(c.get("network_racks") or "", f"clusters.{name}.network_racks"),
            units=tuple(
                UnitAlloc(
                    str(_checked(u["bmc"])),
                    str(_checked(u["management"])),
                    str(_checked(u["storage"])),
                    tuple(str(_checked(x)) for x in u["compute"]),
                )
                for u in c["units"]
            ),
        )
        for name, c in (doc.get("clusters") or {}).items()
    }

    def owners(key: str) -> dict[str, RackAlloc]:
        return {
            str(n): RackAlloc(str(r["hall"]), parse_ranges(r["racks"], f"{key}.{n}.racks"))
            for n, r in (doc.get(key) or {}).items()
        }

    return Allocation(str(doc["site"]), clusters, owners("fabrics"), owners("storage"))


def _checked(cidr: Any) -> str:
    ipaddress.IPv4Network(str(cidr))  # ValueError for a malformed one
    return str(cidr)


def read(stack: str, folder: Path) -> Allocation | None:
    """The stack's record, or None when there is none."""
    path = alloc_path(stack, folder)
    if not path.is_file():
        return None
    return parse(path.read_text(encoding="utf-8"), str(path))


def differences(old: Allocation, new: Allocation) -> list[str]:
    """What `new` changes against `old`, one line per owner (for a stale record's message)."""
    lines: list[str] = []
    for name in sorted(set(old.clusters) | set(new.clusters)):
        a, b = old.clusters.get(name), new.clusters.get(name)
        if a is None:
            lines.append(f"cluster {name}: not in the record")
        elif b is None:
            lines.append(f"cluster {name}: in the record, not in the spec")
        elif a != b:
            lines.append(
                f"cluster {name}: {len(a.units)} units and {len(a.compute_racks)} racks in the record,"
                f" {len(b.units)} and {len(b.compute_racks)} in the spec"
            )
    for kind, olds, news in (("fabric", old.fabrics, new.fabrics), ("storage tier", old.storage, new.storage)):
        for name in sorted(set(olds) | set(news)):
            if olds.get(name) != news.get(name):
                a_racks = len(olds[name].racks) if name in olds else 0
                b_racks = len(news[name].racks) if name in news else 0
                lines.append(f"{kind} {name}: {a_racks} racks in the record, {b_racks} in the spec")
    return lines
