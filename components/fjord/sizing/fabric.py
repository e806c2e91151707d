"""Fabric sizing: leaf, spine and core switches and cables of rail-optimised and leaf-spine fabrics.

One formula for every fabric, from the switch radix (reproduces the DGX SuperPOD reference table):
- a leaf gives `leaf_downlinks` ports to nodes and `leaf_uplinks` to the next tier;
- rail-optimised: each scalable unit gets, per rail, enough leaves for its node slots;
  leaf-spine: enough leaves for every node port of the site;
- two tiers while every spine can reach every leaf (leaves <= radix): spines = leaves x uplinks / radix;
- beyond that three tiers: a spine splits its radix half down, half up, and cores take the spine uplinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from fjord.spec.catalog import SwitchModel


@dataclass(frozen=True, slots=True)
class FabricSize:
    name: str
    """Instance name: `<cluster>-compute` for a cluster's compute fabric, else the design's name."""
    design: str
    role: str
    switch: str
    tiers: int
    leaves: int
    spines: int
    cores: int
    endpoint_cables: int
    leaf_spine_cables: int
    spine_core_cables: int
    endpoints: int
    max_power_kw: float

    @property
    def switches(self) -> int:
        return self.leaves + self.spines + self.cores

    @property
    def cables(self) -> int:
        return self.endpoint_cables + self.leaf_spine_cables + self.spine_core_cables


def max_endpoints(switch: SwitchModel) -> int:
    """Largest non-blocking three-tier fat tree the switch builds: radix^3 / 4."""
    return switch.radix**3 // 4


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
    if leaves <= 1:
        tiers, spines, cores, leaf_spine, spine_core = 1, 0, 0, 0, 0
    elif leaves <= switch.radix:
        tiers, cores, spine_core = 2, 0, 0
        leaf_spine = leaves * up
        spines = ceil(leaf_spine / switch.radix)
    else:
        tiers = 3
        leaf_spine = leaves * up
        half = switch.radix // 2
        spines = ceil(leaf_spine / half)
        spine_core = spines * half
        cores = ceil(spine_core / switch.radix)
    power = (leaves + spines + cores) * switch.max_power_w / 1000
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
    )


def rail_optimised_leaves(switch: SwitchModel, scalable_units: int, slots_per_su: int, rails: int) -> int:
    """Each scalable unit has, per rail, enough leaves for its node slots."""
    return scalable_units * rails * ceil(slots_per_su / switch.leaf_downlinks)


def leaf_spine_leaves(switch: SwitchModel, ports: int) -> int:
    return ceil(ports / switch.leaf_downlinks)
