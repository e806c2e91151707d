"""Fabric sizing: leaf, spine and core switches and cables of rail-optimised and leaf-spine fabrics.

One formula for every fabric, from the switch radix (reproduces the DGX SuperPOD reference tables, cited in
`fjord.spec.catalog.SUPERPOD_SOURCES` and checked in tests/test_sizing.py):
- a leaf gives `leaf_downlinks` ports to nodes and `leaf_uplinks` to the next tier;
- spines and cores are the leaf's own model, or the catalog's `spine` model for a leaf-only switch with few uplinks
  (an SN2201's uplinks go to SN4600C spines);
- rail-optimised: each scalable unit gets, per rail, enough leaves for its node slots;
  leaf-spine: enough leaves for every node port of the site;
- two tiers while every spine can reach every leaf (leaves <= spine radix). Every leaf spreads its uplinks evenly
  over every spine, so the spine count divides the leaf's uplinks: the fewest spines that both hold
  leaves x uplinks ports and divide the uplinks (Q3400 leaves of 72 uplinks: 32 leaves need 16 spines' ports, 16
  does not divide 72, so 18 spines, as NVIDIA's XDR table lists);
- beyond that three tiers: a spine splits its radix half down, half up, and cores take the spine uplinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from fjord.spec.catalog import SWITCH_CATALOG, SwitchModel


@dataclass(frozen=True, slots=True)
class FabricSize:
    name: str
    """Instance name: `<cluster>-compute` for a cluster's compute fabric, else the design's name."""
    design: str
    role: str
    switch: str
    """The leaf model (`spine_switch` for the spines and cores)."""
    tiers: int
    leaves: int
    spines: int
    cores: int
    endpoint_cables: int
    leaf_spine_cables: int
    spine_core_cables: int
    endpoints: int
    max_power_kw: float
    spine_switch: str = ""
    """The model of the spines and cores ('' with no spine tier)."""

    @property
    def switches(self) -> int:
        return self.leaves + self.spines + self.cores

    @property
    def cables(self) -> int:
        return self.endpoint_cables + self.leaf_spine_cables + self.spine_core_cables


def spine_of(switch: SwitchModel) -> SwitchModel:
    """The model of the spines and cores above leaves of `switch`: its catalog `spine`, else itself."""
    return switch if switch.spine is None else SWITCH_CATALOG[switch.spine]


def max_endpoints(switch: SwitchModel) -> int:
    """Largest non-blocking three-tier fat tree leaves of `switch` build: a core of spine radix R reaches R pods, a
    pod's spines reach R/2 leaves, each with its downlinks: R x R/2 x downlinks (R^3 / 4 for a symmetric switch)."""
    radix = spine_of(switch).radix
    return radix * (radix // 2) * switch.leaf_downlinks


def even_spines(leaves: int, uplinks: int, radix: int) -> int:
    """Two tiers: the fewest spines that take every leaf's uplinks in equal shares (a divisor of `uplinks`) and
    have the ports for all of them (spines x radix >= leaves x uplinks)."""
    need = ceil(leaves * uplinks / radix)
    return next(d for d in range(need, uplinks + 1) if uplinks % d == 0)


def size_fabric(
    *,
    name: str,
    design: str,
    role: str,
    switch: SwitchModel,
    leaves: int,
    endpoints: int,
    endpoint_cables: int,
) -> FabricSize:
    """Size the tiers above a given number of leaves."""
    up = switch.leaf_uplinks
    spine = spine_of(switch)
    if leaves <= 1:
        tiers, spines, cores, leaf_spine, spine_core = 1, 0, 0, 0, 0
    elif leaves <= spine.radix:
        tiers, cores, spine_core = 2, 0, 0
        leaf_spine = leaves * up
        spines = even_spines(leaves, up, spine.radix)
    else:
        tiers = 3
        leaf_spine = leaves * up
        half = spine.radix // 2
        spines = ceil(leaf_spine / half)
        spine_core = spines * half
        cores = ceil(spine_core / spine.radix)
    power = (leaves * switch.max_power_w + (spines + cores) * spine.max_power_w) / 1000
    return FabricSize(
        name=name,
        design=design,
        role=role,
        switch=switch.name,
        tiers=tiers,
        leaves=leaves,
        spines=spines,
        cores=cores,
        endpoint_cables=endpoint_cables,
        leaf_spine_cables=leaf_spine,
        spine_core_cables=spine_core,
        endpoints=endpoints,
        max_power_kw=power,
        spine_switch=spine.name if spines else "",
    )


def rail_optimised_leaves(switch: SwitchModel, scalable_units: int, slots_per_su: int, rails: int) -> int:
    """Each scalable unit has, per rail, enough leaves for its node slots."""
    return scalable_units * rails * ceil(slots_per_su / switch.leaf_downlinks)


def leaf_spine_leaves(switch: SwitchModel, ports: int) -> int:
    return ceil(ports / switch.leaf_downlinks)
