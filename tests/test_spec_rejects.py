"""Impossible or mistyped sites are rejected before anything is built, naming the field, value and limit.

Every case starts from a real site (the embedded dev default, or the uk / narvik stack), makes one
change, and runs what the program runs: `load_site` then `size_site`. Each must raise `SiteError` with
a problem at exactly the expected field path, whose message says what is allowed and whose text shows
the offending value.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fjord.sizing.site import size_site
from fjord.spec.errors import Problem, SiteError
from fjord.spec.load import default_site, list_stacks, load_site, parse_stack_doc, read_stack

REPO = Path(__file__).resolve().parents[1]
STACKS = REPO / "stacks"

Raw = dict[str, Any]
Mutation = Callable[[Raw], None]


# --- site bases and one-change mutations ------------------------------------------------------------


def dev_raw() -> Raw:
    return copy.deepcopy(default_site())


def stack_raw(name: str) -> Raw:
    return copy.deepcopy(read_stack(name, STACKS).site)


BASES: dict[str, Callable[[], Raw]] = {
    "dev": dev_raw,
    "uk": lambda: stack_raw("uk"),
    "narvik": lambda: stack_raw("narvik"),
}


def _keys(path: str) -> list[str | int]:
    """`clusters[0].gpus` -> ["clusters", 0, "gpus"]."""
    return [int(t[1:-1]) if t.startswith("[") else t for t in re.findall(r"\[\d+\]|[^.\[\]]+", path)]


def _parent(raw: Raw, path: str) -> tuple[Any, str | int]:
    *head, last = _keys(path)
    node: Any = raw
    for key in head:
        node = node[key]
    return node, last


def put(path: str, value: Any) -> Mutation:
    """Set (or add) the value at `path`."""

    def apply(raw: Raw) -> None:
        parent, key = _parent(raw, path)
        parent[key] = value

    return apply


def drop(path: str) -> Mutation:
    """Remove the key or list item at `path`."""

    def apply(raw: Raw) -> None:
        parent, key = _parent(raw, path)
        del parent[key]

    return apply


def rename(path: str, new_key: str) -> Mutation:
    """Rename the key at `path` (a typo), keeping its value."""

    def apply(raw: Raw) -> None:
        parent, key = _parent(raw, path)
        parent[new_key] = parent.pop(key)

    return apply


def append(path: str, item: Any) -> Mutation:
    def apply(raw: Raw) -> None:
        parent, key = _parent(raw, path)
        parent[key].append(item)

    return apply


def both(*mutations: Mutation) -> Mutation:
    """Several edits that together make one bad input (e.g. a GB200 cluster: SKU and GPU count)."""

    def apply(raw: Raw) -> None:
        for m in mutations:
            m(raw)

    return apply


def copy_item(src: str, dst_list: str, **changes: Any) -> Mutation:
    """Append a copy of the item at `src` to the list at `dst_list`, with some keys changed."""

    def apply(raw: Raw) -> None:
        parent, key = _parent(raw, src)
        item = copy.deepcopy(parent[key]) | changes
        lst, k = _parent(raw, dst_list)
        lst[k].append(item)

    return apply


def shown(value: Any) -> str:
    """What `Problem.__str__` prints for a value: its repr, cut to 77 characters when over 80; a placeholder
    for a value never shown (a secret, a credential) as it is."""
    if value in ("[secret]", "[not shown]"):
        return str(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77]


# --- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    base: str
    mutate: Mutation
    path: str
    value: Any
    """The offending value the problem must carry (and print)."""
    hint: str
    """Text the message must contain: what is allowed, or the limit figure."""


OOB2 = {"name": "oob2", "role": "oob", "technology": "ethernet", "topology": "leaf-spine", "switch": "SN2201"}
GB200_72 = both(put("clusters[0].sku", "GB200-NVL72"), put("clusters[0].gpus", 72))

CASES: list[Bad] = [
    # power
    Bad(
        "power-over-budget",
        "dev",
        put("power.grid_budget_mw", 0.05),
        "power.grid_budget_mw",
        0.05,
        "allowed: a budget of at least",
    ),
    Bad(
        "power-over-budget-uk",
        "uk",
        put("power.grid_budget_mw", 10.0),
        "power.grid_budget_mw",
        10.0,
        "allowed: a budget of at least",
    ),
    Bad("grid-budget-zero", "dev", put("power.grid_budget_mw", 0), "power.grid_budget_mw", 0, "greater than 0"),
    Bad(
        "grid-budget-infinite",
        "dev",
        put("power.grid_budget_mw", float("inf")),
        "power.grid_budget_mw",
        float("inf"),
        "",
    ),
    Bad("pue-below-1", "dev", put("power.pue", 0.95), "power.pue", 0.95, "greater than or equal to 1"),
    Bad("pue-above-3", "dev", put("power.pue", 3.5), "power.pue", 3.5, "less than or equal to 3"),
    Bad(
        "unknown-energy-source",
        "dev",
        put("power.energy_source", "coal"),
        "power.energy_source",
        "coal",
        "'hydro'",
    ),
    # address plan
    Bad(
        "supernets-overlap",
        "dev",
        put("ip_plan.management", "10.0.0.0/21"),
        "ip_plan.management",
        "10.0.0.0/21",
        "must not overlap",
    ),
    Bad(
        "kubernetes-supernets-overlap",
        "uk",
        put("ip_plan.kubernetes_services", "10.129.0.0/18"),
        "ip_plan.kubernetes_services",
        "10.129.0.0/18",
        "overlaps kubernetes_pods",
    ),
    Bad(
        "bmc-supernet-too-small",
        "dev",
        put("ip_plan.bmc", "10.0.0.0/27"),
        "ip_plan.bmc",
        "10.0.0.0/27",
        "allowed: a supernet of /26 or larger",
    ),
    Bad(
        "compute-supernet-too-small",
        "uk",
        put("ip_plan.compute", "10.21.0.0/20"),
        "ip_plan.compute",
        "10.21.0.0/20",
        "allowed: a supernet of /18 or larger",
    ),
    Bad(
        "supernet-host-bits-set",
        "dev",
        put("ip_plan.bmc", "10.0.0.1/22"),
        "ip_plan.bmc",
        "10.0.0.1/22",
        "IPv4 network",
    ),
    Bad(
        "supernet-given-as-a-number",
        "uk",
        put("ip_plan.kubernetes_pods", 7),
        "ip_plan.kubernetes_pods",
        7,
        "",
    ),
    Bad("supernet-ipv6", "dev", put("ip_plan.storage", "fd00::/64"), "ip_plan.storage", "fd00::/64", "IPv4"),
    # whole nodes, whole racks, halls
    Bad("h100-not-whole-nodes", "dev", put("clusters[0].gpus", 30), "clusters[0].gpus", 30, "a multiple of 8"),
    Bad(
        "gb200-not-whole-racks",
        "narvik",
        put("clusters[0].gpus", 25000),
        "clusters[0].gpus",
        25000,
        "a multiple of 72",
    ),
    Bad(
        "gb300-not-whole-racks",
        "narvik",
        put("clusters[3].gpus", 600),
        "clusters[3].gpus",
        600,
        "a multiple of 72",
    ),
    Bad(
        "racks-over-hall-capacity",
        "uk",
        put("clusters[1].gpus", 8192),
        "halls[1].rack_positions",
        200,
        "allowed: at most 200 racks",
    ),
    Bad(
        "hall-too-small-dev",
        "dev",
        put("halls[0].rack_positions", 1),
        "halls[0].rack_positions",
        1,
        "allowed: at most 1 racks",
    ),
    Bad(
        "rack-power-over-hall-limit",
        "dev",
        put("clusters[0].nodes_per_rack", 5),
        "clusters[0].nodes_per_rack",
        5,
        "allowed: at most 4 nodes per rack",
    ),
    Bad(
        "hall-rack-power-too-low-for-hgx",
        "uk",
        put("halls[0].rack_power_kw", 30),
        "clusters[0].nodes_per_rack",
        4,
        "allowed: at most 2 nodes per rack",
    ),
    Bad(
        "gb200-in-air-hall",
        "dev",
        GB200_72,
        "clusters[0].hall",
        "lab",
        "allowed: a liquid-cooled hall",
    ),
    Bad(
        "nvl72-moved-to-air-hall",
        "narvik",
        put("clusters[2].hall", "hall-e"),
        "clusters[2].hall",
        "hall-e",
        "allowed: a liquid-cooled hall",
    ),
    Bad(
        "gb200-rack-over-hall-kw",
        "uk",
        both(put("clusters[1].sku", "GB200-NVL72"), put("clusters[1].gpus", 72 * 57)),
        "clusters[1].hall",
        "hall-2",
        "allowed: a hall with racks of >= 132 kW",
    ),
    Bad(
        "three-tier-fabric-too-small",
        "dev",
        put("clusters[0].gpus", 70_000),
        "clusters[0].compute_fabric",
        "ib",
        "65536",
    ),
    # Was checked only when the platform was built (plan, render): `validate` said ok first.
    Bad(
        "operator-driver-branch-without-release",
        "dev",
        both(put("clusters[0].gpu_stack", {"driver": "operator"}), put("software.driver_branch", 575)),
        "software.driver_branch",
        575,
        "pins no GPU Operator driver release of this branch; allowed: 570, 580, or gpu_stack.driver 'host'",
    ),
    # Site-wide fabrics serve every node of the site: the same three-tier limit holds for them.
    Bad(
        "storage-fabric-over-three-tiers",
        "narvik",
        put("fabrics[1].ports_per_node", 3),
        "fabrics[1].switch",
        "SN4600C",
        "exceed the 65536 a three-tier SN4600C fabric can connect",
    ),
    # Host names are one DNS label: <site>-<cluster>-suNNN-nNNN of at most 63 characters.
    Bad(
        "host-name-over-a-dns-label",
        "dev",
        both(
            put("name", "s" * 32),
            put("clusters[0].name", "c" * 24),
            put("tenants[0].gpu_quotas[0].cluster", "c" * 24),
        ),
        "clusters[0].name",
        "c" * 24,
        "allowed: at most 63 (one DNS label), so a cluster name of at most 19 characters",
    ),
    # clusters
    Bad("unknown-sku", "dev", put("clusters[0].sku", "H300-SXM"), "clusters[0].sku", "H300-SXM", "allowed"),
    Bad(
        "gpus-and-scalable-units",
        "dev",
        put("clusters[0].scalable_units", 1),
        "clusters[0].gpus",
        32,
        "exactly one of 'gpus' or 'scalable_units'",
    ),
    Bad(
        "neither-gpus-nor-scalable-units",
        "uk",
        drop("clusters[1].gpus"),
        "clusters[1].gpus",
        None,
        "exactly one of 'gpus' or 'scalable_units'",
    ),
    Bad("gpus-negative", "dev", put("clusters[0].gpus", -8), "clusters[0].gpus", -8, "greater than 0"),
    Bad(
        "scalable-units-zero",
        "uk",
        put("clusters[0].scalable_units", 0),
        "clusters[0].scalable_units",
        0,
        "greater than 0",
    ),
    Bad(
        "nodes-per-rack-over-64",
        "dev",
        put("clusters[0].nodes_per_rack", 65),
        "clusters[0].nodes_per_rack",
        65,
        "less than or equal to 64",
    ),
    Bad(
        "nvl72-nodes-per-rack-not-18",
        "narvik",
        put("clusters[0].nodes_per_rack", 16),
        "clusters[0].nodes_per_rack",
        16,
        "18",
    ),
    Bad(
        "cluster-name-upper-case",
        "dev",
        put("clusters[0].name", "H100"),
        "clusters[0].name",
        "H100",
        "allowed",
    ),
    Bad("site-name-upper-case", "dev", put("name", "Dev"), "name", "Dev", "allowed"),
    Bad(
        "tenant-with-underscore",
        "uk",
        put("clusters[0].tenant", "nhs_research"),
        "clusters[0].tenant",
        "nhs_research",
        "allowed",
    ),
    Bad(
        "duplicate-cluster-names",
        "uk",
        put("clusters[1].name", "h200"),
        "clusters[1].name",
        "h200",
        "must be unique",
    ),
    Bad(
        "duplicate-hall-names",
        "uk",
        copy_item("halls[0]", "halls"),
        "halls[2].name",
        "hall-1",
        "must be unique",
    ),
    Bad(
        "unknown-scheduler",
        "dev",
        put("clusters[0].scheduler", "pbs"),
        "clusters[0].scheduler",
        "pbs",
        "'slurm'",
    ),
    Bad(
        "unknown-hall-reference",
        "dev",
        put("clusters[0].hall", "hall-9"),
        "clusters[0].hall",
        "hall-9",
        "allowed: lab",
    ),
    Bad(
        "unknown-compute-fabric",
        "dev",
        put("clusters[0].compute_fabric", "roce"),
        "clusters[0].compute_fabric",
        "roce",
        "allowed: ib",
    ),
    Bad(
        "compute-fabric-is-storage-fabric",
        "uk",
        put("clusters[0].compute_fabric", "storage"),
        "clusters[0].compute_fabric",
        "storage",
        "allowed: ndr, ndr-ufm",
    ),
    # fabrics
    Bad(
        "switch-technology-mismatch",
        "uk",
        put("fabrics[1].switch", "SN5600"),
        "fabrics[1].switch",
        "SN5600",
        "this fabric is infiniband-ndr",
    ),
    Bad(
        "infiniband-switch-on-ethernet-fabric",
        "dev",
        put("fabrics[1].switch", "QM9700"),
        "fabrics[1].switch",
        "QM9700",
        "this fabric is ethernet",
    ),
    Bad("unknown-switch", "dev", put("fabrics[0].switch", "QM8700"), "fabrics[0].switch", "QM8700", "allowed"),
    Bad(
        "ethernet-compute-fabric",
        "dev",
        both(put("fabrics[0].technology", "ethernet"), put("fabrics[0].switch", "SN4600C")),
        "fabrics[0].technology",
        "ethernet",
        "InfiniBand or Spectrum-X",
    ),
    Bad(
        "missing-storage-fabric",
        "dev",
        drop("fabrics[1]"),
        "fabrics",
        ["ib", "oob"],
        "exactly one 'storage' fabric, has 0",
    ),
    Bad(
        "two-oob-fabrics",
        "uk",
        append("fabrics", OOB2),
        "fabrics",
        ["ndr-ufm", "ndr", "storage", "oob", "oob2"],
        "exactly one 'oob' fabric, has 2",
    ),
    Bad(
        "ports-per-node-over-16",
        "dev",
        put("fabrics[1].ports_per_node", 17),
        "fabrics[1].ports_per_node",
        17,
        "less than or equal to 16",
    ),
    Bad(
        "ufm-node-slots-over-8",
        "uk",
        put("fabrics[0].ufm_node_slots", 9),
        "fabrics[0].ufm_node_slots",
        9,
        "less than or equal to 8",
    ),
    # storage
    Bad(
        "storage-tier-in-unknown-hall",
        "uk",
        put("storage[1].hall", "hall-3"),
        "storage[1].hall",
        "hall-3",
        "allowed: hall-1, hall-2",
    ),
    Bad(
        "storage-rack-power-over-hall-limit",
        "uk",
        put("storage[0].power_kw", 500.0),
        "storage[0].power_kw",
        500.0,
        "allowed: at most 450 kW over 10 racks",
    ),
    Bad(
        "storage-capacity-zero",
        "dev",
        put("storage[0].capacity_pb", 0),
        "storage[0].capacity_pb",
        0,
        "greater than 0",
    ),
    Bad("storage-kind-unknown", "dev", put("storage[0].kind", "tape"), "storage[0].kind", "tape", "'object'"),
    # software
    Bad(
        "cuda-12.8-with-driver-550",
        "dev",
        put("software.driver_branch", 550),
        "software.driver_branch",
        550,
        ">= 570",
    ),
    Bad("unknown-cuda", "dev", put("software.cuda", "11.8"), "software.cuda", "11.8", "allowed: 12.0"),
    Bad(
        "gb300-needs-newer-driver",
        "dev",
        both(
            put("halls[0].cooling", "liquid"),
            put("clusters[0].sku", "GB300-NVL72"),
            put("clusters[0].gpus", 72),
        ),
        "software.driver_branch",
        570,
        ">= 580",
    ),
    Bad(
        "narvik-gb300-on-driver-575",
        "narvik",
        both(put("software.driver_branch", 575), put("software.cuda", "12.8")),
        "software.driver_branch",
        575,
        ">= 580",
    ),
    Bad(
        "driver-branch-too-old",
        "dev",
        put("software.driver_branch", 400),
        "software.driver_branch",
        400,
        "greater than or equal to 470",
    ),
    Bad(
        "kubernetes-too-old",
        "dev",
        put("software.kubernetes", "1.24"),
        "software.kubernetes",
        "1.24",
        "allowed",
    ),
    Bad(
        "kubernetes-too-new",
        "uk",
        put("software.kubernetes", "1.38"),
        "software.kubernetes",
        "1.38",
        "allowed",
    ),
    Bad("unknown-os", "dev", put("software.os", "centos-7"), "software.os", "centos-7", "'ubuntu-24.04'"),
    # identity
    Bad("country-lower-case", "dev", put("country", "no"), "country", "no", "allowed"),
    Bad("country-three-letters", "uk", put("country", "GBR"), "country", "GBR", "allowed"),
    Bad("jurisdiction-unknown", "dev", put("jurisdiction", "US"), "jurisdiction", "US", "'EEA'"),
    Bad("region-empty", "dev", put("region", ""), "region", "", "at least 1 character"),
    Bad("no-halls", "dev", put("halls", []), "halls", [], "at least 1 item"),
    Bad("no-clusters", "uk", put("clusters", []), "clusters", [], "at least 1 item"),
    # unknown keys (typos): the message names the key meant
    Bad("typo-top-level", "dev", rename("region", "regoin"), "regoin", "lab", "did you mean 'region'?"),
    Bad(
        "typo-in-power",
        "dev",
        rename("power.grid_budget_mw", "grid_budget_mwh"),
        "power.grid_budget_mwh",
        1.0,
        "did you mean 'grid_budget_mw'?",
    ),
    Bad(
        "typo-in-cluster",
        "dev",
        rename("clusters[0].gpus", "gpu"),
        "clusters[0].gpu",
        32,
        "did you mean 'gpus'?",
    ),
    Bad(
        "typo-in-second-cluster",
        "uk",
        rename("clusters[1].compute_fabric", "compute_fabrics"),
        "clusters[1].compute_fabrics",
        "ndr",
        "did you mean 'compute_fabric'?",
    ),
    Bad(
        "typo-in-ip-plan",
        "dev",
        rename("ip_plan.kubernetes_pods", "kubernetes_podz"),
        "ip_plan.kubernetes_podz",
        "10.32.0.0/16",
        "did you mean 'kubernetes_pods'?",
    ),
    Bad(
        "typo-in-hall",
        "dev",
        rename("halls[0].rack_power_kw", "rack_power"),
        "halls[0].rack_power",
        45,
        "did you mean 'rack_power_kw'?",
    ),
    Bad(
        "typo-in-storage-tier",
        "uk",
        rename("storage[1].endpoint", "endpoint_url"),
        "storage[1].endpoint_url",
        "https://s3.uk.fjord.example",
        "did you mean 'endpoint'?",
    ),
    Bad(
        "typo-in-software",
        "dev",
        rename("software.driver_branch", "driver_brnch"),
        "software.driver_brnch",
        570,
        "did you mean 'driver_branch'?",
    ),
    # who owns the GPU stack, upgrades, validation
    Bad(
        "operator-owned-driver-on-slurm",
        "uk",
        put("clusters[0].gpu_stack", {"driver": "operator"}),
        "clusters[0].gpu_stack.driver",
        "operator",
        "allowed: 'host'",
    ),
    Bad(
        "unknown-driver-owner",
        "dev",
        put("clusters[0].gpu_stack", {"driver": "ansible"}),
        "clusters[0].gpu_stack.driver",
        "ansible",
        "'host' or 'operator'",
    ),
    Bad(
        "upgrade-batch-zero",
        "dev",
        put("clusters[0].upgrade", {"batch_percent": 0}),
        "clusters[0].upgrade.batch_percent",
        0,
        "greater than or equal to 1",
    ),
    Bad(
        "dcgm-level-5",
        "dev",
        put("clusters[0].acceptance", {"dcgm_level": 5}),
        "clusters[0].acceptance.dcgm_level",
        5,
        "less than or equal to 4",
    ),
    # tenants and air gap
    Bad(
        "cluster-tenant-undeclared",
        "dev",
        put("clusters[0].tenant", "nobody"),
        "clusters[0].tenant",
        "nobody",
        "allowed: platform",
    ),
    Bad(
        "quota-on-unknown-cluster",
        "dev",
        put("tenants[0].gpu_quotas[0].cluster", "h200"),
        "tenants[0].gpu_quotas[0].cluster",
        "h200",
        "allowed: h100",
    ),
    Bad(
        "quota-over-slurm-cluster",
        "uk",
        put("tenants[0].gpu_quotas", [{"cluster": "h200", "gpus": 2048}]),
        "tenants[0].gpu_quotas[0].gpus",
        2048,
        "at most the 1016 it has",
    ),
    # Slurm's control plane
    Bad(
        "slurm-controller-not-a-node",
        "uk",
        put("clusters[0].slurm.controllers", ["uk-h200-su000-n000", "uk-h200-su009-n000"]),
        "clusters[0].slurm.controllers[1]",
        "uk-h200-su009-n000",
        "allowed: one of its nodes, uk-h200-su000-n000 to uk-h200-su003-n030",
    ),
    Bad(
        "slurm-controller-past-a-partial-unit",
        "uk",
        put("clusters[0].slurm.controllers", ["uk-h200-su003-n031"]),
        "clusters[0].slurm.controllers[0]",
        "uk-h200-su003-n031",
        "is no node of cluster 'h200'",
    ),
    Bad(
        "slurm-accounting-on-another-cluster",
        "uk",
        put("clusters[0].slurm.accounting_host", "uk-b200-su000-n000"),
        "clusters[0].slurm.accounting_host",
        "uk-b200-su000-n000",
        "is no node of cluster 'h200'",
    ),
    Bad(
        "slurm-three-controllers",
        "uk",
        put("clusters[0].slurm.controllers", ["uk-h200-su000-n000", "uk-h200-su000-n001", "uk-h200-su000-n002"]),
        "clusters[0].slurm.controllers",
        ["uk-h200-su000-n000", "uk-h200-su000-n001", "uk-h200-su000-n002"],
        "at most 2",
    ),
    Bad(
        "slurm-same-controller-twice",
        "uk",
        put("clusters[0].slurm.controllers", ["uk-h200-su000-n000", "uk-h200-su000-n000"]),
        "clusters[0].slurm.controllers",
        ["uk-h200-su000-n000", "uk-h200-su000-n000"],
        "allowed: a primary and a different backup host",
    ),
    Bad(
        "slurm-on-a-kubernetes-cluster",
        "uk",
        put("clusters[1].slurm", {"controllers": ["uk-b200-su000-n000"]}),
        "clusters[1].slurm",
        ["uk-b200-su000-n000"],
        "allowed: 'slurm' only with scheduler 'slurm'",
    ),
    Bad(
        "slurm-release-as-number",
        "uk",
        put("clusters[0].slurm.release", 24.11),
        "clusters[0].slurm.release",
        24.11,
        "a Slurm major release such as '22.05'",
    ),
    Bad(
        "quotas-exceed-cluster",
        "uk",
        put("tenants[2].gpu_quotas[0].gpus", 2048),
        "tenants[2].gpu_quotas[0].gpus",
        2048,
        "at most the 4096 it has",
    ),
    Bad(
        "duplicate-bucket",
        "dev",
        put("tenants[0].buckets", ["datasets", "datasets"]),
        "tenants[0].buckets",
        "datasets",
        "must be unique",
    ),
    Bad(
        "air-gapped-from-nvidia-repository",
        "narvik",
        put("software.driver_source", "repository"),
        "software.driver_source",
        "repository",
        "allowed: 'mirror', 'preinstalled'",
    ),
    Bad(
        "mirror-without-air-gap",
        "dev",
        put("software.driver_source", "mirror"),
        "software.driver_source",
        "mirror",
        "air_gap.packages",
    ),
    Bad(
        "registry-with-scheme",
        "narvik",
        put("air_gap.registry", "https://registry.example"),
        "air_gap.registry",
        "https://registry.example",
        "no scheme",
    ),
    # bmc (issue 4: bare metal through Redfish)
    Bad(
        "bmc-virtual-media-without-image",
        "dev",
        put("bmc", {"boot": "virtual-media"}),
        "bmc.image_url",
        None,
        "needs the OS image's URL",
    ),
    Bad(
        "bmc-image-without-virtual-media",
        "dev",
        put("bmc", {"boot": "pxe", "image_url": "http://images.example/os.iso"}),
        "bmc.boot",
        "pxe",
        "allowed: 'virtual-media'",
    ),
    Bad(
        "bmc-systems-without-endpoint",
        "dev",
        put("bmc", {"systems": {"dev-h100-su000-n000": "abc"}}),
        "bmc.systems",
        ["dev-h100-su000-n000"],
        "set 'endpoint'",
    ),
    Bad(
        "bmc-concurrency-zero",
        "dev",
        put("bmc", {"concurrency": 0}),
        "bmc.concurrency",
        0,
        "greater than or equal to 1",
    ),
    Bad("bmc-unknown-boot", "dev", put("bmc", {"boot": "usb"}), "bmc.boot", "usb", "'pxe', 'virtual-media' or 'disk'"),
    Bad(
        "bmc-endpoint-not-a-url",
        "dev",
        put("bmc", {"endpoint": "127.0.0.1:8000"}),
        "bmc.endpoint",
        "127.0.0.1:8000",
        "allowed: an http(s) URL",
    ),
    Bad("bmc-unknown-key", "dev", put("bmc", {"usrname": "x"}), "bmc.usrname", "x", "unknown key"),
    Bad(
        "bmc-password-in-the-site",
        "dev",
        put("bmc", {"password": "hunter2-never-shown"}),
        "bmc.password",
        "[hidden]",
        "pulumi config set --secret fjord:bmcPassword",
    ),
    # object store: sovereignty, where it is, bucket names, retention
    Bad(
        "state-outside-jurisdiction",
        "narvik",
        put("object_store", {"endpoint": "https://s3.london.example", "jurisdiction": "UK"}),
        "object_store.jurisdiction",
        "UK",
        "allowed: 'EEA'",
    ),
    Bad(
        "state-tier-in-other-jurisdiction",
        "uk",
        put("object_store.jurisdiction", "EU"),
        "object_store.jurisdiction",
        "EU",
        "allowed: 'UK'",
    ),
    Bad(
        "state-endpoint-without-jurisdiction",
        "uk",
        put("object_store", {"endpoint": "https://s3.other.example"}),
        "object_store.jurisdiction",
        None,
        "allowed: EU, EEA, UK, CH",
    ),
    Bad(
        "state-tier-and-endpoint",
        "uk",
        put("object_store.endpoint", "https://s3.other.example"),
        "object_store.tier",
        "objects",
        "exactly one of 'tier'",
    ),
    Bad(
        "state-tier-not-object",
        "uk",
        put("object_store.tier", "vast"),
        "object_store.tier",
        "vast",
        "allowed: objects",
    ),
    Bad(
        "state-tier-missing",
        "dev",
        put("object_store", {"tier": "scratch"}),
        "object_store.tier",
        "scratch",
        "allowed: (none defined)",
    ),
    Bad(
        "state-endpoint-not-url",
        "narvik",
        put("object_store", {"endpoint": "s3.narvik.example", "jurisdiction": "EEA"}),
        "object_store.endpoint",
        "s3.narvik.example",
        "has no scheme; allowed: an http(s) URL of an S3 endpoint, http(s)://host[:port]",
    ),
    # Every URL of the site is checked as one: scheme, host, port; `fjord state init` crashed on a tier's.
    *(
        Bad(
            f"tier-endpoint-{case}",
            "narvik",
            put("storage[1].endpoint", url),
            "storage[1].endpoint",
            url,
            hint,
        )
        for case, url, hint in (
            ("no-scheme", "s3.narvik.example:7480", "has no scheme; allowed: an http(s) or nfs URL"),
            ("ftp", "ftp://s3.narvik.example", "has scheme 'ftp'; allowed: an http(s) or nfs URL"),
            ("no-host", "https://:7480", "has no valid host (none)"),
            ("bad-host", "https://s3_narvik!example", "has no valid host (s3_narvik!example)"),
            ("port-too-big", "https://s3.narvik.example:99999", "the port a number of 1-65535"),
            ("port-zero", "http://s3.narvik.example:0", "the port a number of 1-65535"),
            ("port-not-a-number", "http://s3.narvik.example:http", "the port a number of 1-65535"),
            ("empty-port", "http://s3.narvik.example:", "the port a number of 1-65535"),
            ("spaces", "https://s3.narvik.example /x", "holds spaces"),
            ("a-query", "https://s3.narvik.example/?x=1", "has a query or fragment"),
            ("nfs-for-an-object-tier", "nfs://s3.narvik.example", "an object tier is reached over S3"),
        )
    ),
    Bad(
        "tier-endpoint-with-a-password",
        "narvik",
        put("storage[1].endpoint", "https://admin:hunter2@s3.narvik.example"),
        "storage[1].endpoint",
        "[not shown]",
        "holds a user or password",
    ),
    Bad(
        "tier-endpoint-not-a-string",
        "narvik",
        put("storage[1].endpoint", 7480),
        "storage[1].endpoint",
        7480,
        "must be a string; allowed: an http(s) or nfs URL",
    ),
    Bad(
        "mirror-url-bad-port",
        "narvik",
        put("air_gap.packages", "https://mirror.narvik.example:0/apt"),
        "air_gap.packages",
        "https://mirror.narvik.example:0/apt",
        "the port a number of 1-65535",
    ),
    Bad(
        "state-bucket-name",
        "uk",
        put("object_store.state_bucket", "UK_State"),
        "object_store.state_bucket",
        "UK_State",
        "S3 bucket name",
    ),
    Bad(
        "noncurrent-expiry-shorter-than-lock",
        "narvik",
        put("object_store.noncurrent_days", 7),
        "object_store.noncurrent_days",
        7,
        "allowed: at least 30",
    ),
    Bad(
        "tenant-bucket-name-too-long",
        "narvik",
        both(
            put("name", "narvik-hydro-site-north-norway-1"),
            put("tenants[1].buckets", ["training-data-for-the-models-v2"]),
        ),
        "tenants[1].buckets",
        "training-data-for-the-models-v2",
        "allowed: at most 63",
    ),
    # Values YAML gives a type the field does not take: true is no count, no budget.
    Bad("gpus-true", "dev", put("clusters[0].gpus", True), "clusters[0].gpus", True, "allowed: a whole number"),
    Bad("budget-true", "dev", put("power.grid_budget_mw", True), "power.grid_budget_mw", True, "allowed: a number"),
    Bad(
        "gpus-beyond-any-cluster",
        "uk",
        put("clusters[1].gpus", 10**30),
        "clusters[1].gpus",
        10**30,
        "allowed: <= 1000000",
    ),
    Bad("supernet-multicast", "dev", put("ip_plan.bmc", "224.0.0.0/20"), "ip_plan.bmc", "224.0.0.0/20", "multicast"),
    Bad(
        "supernet-loopback",
        "dev",
        put("ip_plan.storage", "127.8.0.0/16"),
        "ip_plan.storage",
        "127.8.0.0/16",
        "loopback",
    ),
    Bad(
        "supernet-this-network", "dev", put("ip_plan.bmc", "0.0.0.0/20"), "ip_plan.bmc", "0.0.0.0/20", "'this network'"
    ),
    Bad(
        "fabric-named-like-a-clusters-compute-fabric",
        "uk",
        put("fabrics[2].name", "b200-compute"),
        "fabrics[2].name",
        "b200-compute",
        "compute fabric of cluster 'b200'",
    ),
    Bad(
        "tenant-buckets-one-name-on-the-endpoint",
        "uk",
        both(
            put("tenants[0].buckets", ["x-data"]),
            append("tenants", {"name": "nhs-research-x", "buckets": ["data"]}),
        ),
        "tenants[3].buckets",
        "data",
        "is the bucket 'uk-nhs-research-x-data' on the endpoint, as tenants[0].buckets is",
    ),
    Bad(
        "state-bucket-is-the-artifacts-bucket",
        "uk",
        put("object_store.artifacts_bucket", "uk-state"),
        "object_store.artifacts_bucket",
        "uk-state",
        "as object_store.state_bucket is",
    ),
    Bad(
        "state-bucket-is-a-tenant-bucket",
        "uk",
        put("object_store.state_bucket", "uk-nhs-research-imaging"),
        "tenants[0].buckets",
        "imaging",
        "as object_store.state_bucket is",
    ),
    Bad(
        "bmc-systems-of-no-node",
        "dev",
        put("bmc", {"endpoint": "https://lab:8000", "systems": {"dev-h100-su000-n099": "sys9"}}),
        "bmc.systems.dev-h100-su000-n099",
        "sys9",
        "no node of this site; allowed: its node names, dev-h100-su000-n000 to dev-h100-su000-n003",
    ),
    Bad(
        "bios-value-of-no-allowed-kind",
        "dev",
        put("bmc", {"bios": {"SriovGlobalEnable": [1]}}),
        "bmc.bios.SriovGlobalEnable",
        [1],
        "allowed: a string, or a whole number, or true or false",
    ),
    Bad("required-key-missing", "dev", drop("power.energy_source"), "power.energy_source", None, "'hydro'"),
    # Credentials never appear in a problem, whatever the problem: an unknown credential-like key, a secret.
    Bad("unknown-password-key", "dev", put("bmc", {"passwd": "hunter2"}), "bmc.passwd", "[not shown]", "unknown key"),
    Bad(
        "secret-inside-the-site",
        "dev",
        put("bmc", {"username": {"secure": "v1:Q2lwaGVy"}}),
        "bmc.username",
        "[secret]",
        "allowed: a string",
    ),
]


def _reject(case: Bad) -> tuple[SiteError, list[Problem]]:
    raw = BASES[case.base]()
    case.mutate(raw)
    with pytest.raises(SiteError) as caught:
        size_site(load_site(raw))
    exc = caught.value
    at_path = [p for p in exc.problems if p.path == case.path]
    assert at_path, f"no problem at {case.path!r}; got: {exc.lines()}"
    return exc, at_path


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_site_is_rejected_at_its_field(case: Bad) -> None:
    exc, at_path = _reject(case)
    matching = [p for p in at_path if case.hint in p.message]
    assert matching, f"no problem at {case.path!r} says {case.hint!r}; got: {[str(p) for p in at_path]}"
    problem = matching[0]
    assert problem.value == case.value
    assert shown(case.value) in str(problem)
    assert str(problem).startswith(f"{case.path}: ")
    assert str(problem) in str(exc)


def test_every_rejection_says_what_is_allowed() -> None:
    """Not only each case's own hint: every problem the table provokes at its field says what is allowed,
    in one form (`...; allowed: ...`, or `allowed keys: ...` for a typo), pydantic's own checks included."""
    silent = []
    for case in CASES:
        _, at_path = _reject(case)
        silent += [f"{case.id}: {p}" for p in at_path if not re.search(r"\ballowed( keys)?: \S", p.message)]
    assert silent == []


def test_the_table_is_big_and_distinct() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    inputs = set()
    for case in CASES:
        raw = BASES[case.base]()
        case.mutate(raw)
        inputs.add(repr(raw))
    assert len(inputs) == len(CASES), "two cases make the same bad site"


def test_typos_suggest_the_right_key_and_list_the_allowed_ones() -> None:
    raw = dev_raw()
    rename("clusters[0].gpus", "gpu")(raw)
    with pytest.raises(SiteError) as caught:
        load_site(raw)
    (problem,) = [p for p in caught.value.problems if p.path == "clusters[0].gpu"]
    assert "unknown key" in problem.message
    assert "did you mean 'gpus'?" in problem.message
    assert "allowed keys: " in problem.message
    for key in ("compute_fabric", "gpus", "hall", "name", "scalable_units", "sku", "tenant"):
        assert key in problem.message


# --- stack files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadStack:
    id: str
    run: Callable[[], object]
    path: str
    value: Any
    hint: str


THE_FILE = "<the stack file's path>"


def read_file(data: bytes, stack: str = "prod") -> Callable[[], object]:
    """Read a stack file holding exactly `data`, as every command reads one."""

    def run() -> object:
        with tempfile.TemporaryDirectory() as folder:
            Path(folder, f"Pulumi.{stack}.yaml").write_bytes(data)
            return read_stack(stack, Path(folder))

    return run


BAD_STACKS: list[BadStack] = [
    BadStack("yaml-on-is-true", lambda: parse_stack_doc("dev", {"config": {True: 1}}), "config.True", True, "a string"),
    BadStack(
        "unknown-fjord-key",
        lambda: parse_stack_doc("dev", {"config": {"fjord:confgureHosts": False}}),
        "fjord:confgureHosts",
        False,
        "did you mean 'fjord:configureHosts'?",
    ),
    BadStack(
        "misspelt-credential-key",
        lambda: parse_stack_doc("dev", {"config": {"fjord:bmcPasword": "hunter2"}}),
        "fjord:bmcPasword",
        "[not shown]",
        "did you mean 'fjord:bmcPassword'?",
    ),
    BadStack(
        "key-given-twice",
        read_file(b"config:\n  fjord:site:\n    name: a\n    name: b\n"),
        "name",
        "b",
        "is set twice in one mapping (lines 3 and 4); allowed: each key once",
    ),
    BadStack(
        "credential-given-twice",
        read_file(b"config:\n  fjord:bmcPassword: a\n  fjord:bmcPassword: hunter2\n"),
        "fjord:bmcPassword",
        "[not shown]",
        "is set twice in one mapping (lines 2 and 3)",
    ),
    BadStack(
        "not-utf-8",
        read_file('config:\n  fjord:site: {region: "S\u00f8r"}\n'.encode("latin-1"), "t"),
        "",
        THE_FILE,
        "is not UTF-8 text (line 2: byte 0xf8); allowed: a UTF-8 file",
    ),
    BadStack(
        "yaml-syntax-error-on-one-line",
        read_file(b"config:\n  fjord:site: {name: a\n", "t"),
        "",
        THE_FILE,
        "is not valid YAML: did not find expected ',' or '}' at line 3, column 1",
    ),
    BadStack(
        "prod-without-site",
        lambda: parse_stack_doc("prod", {"config": {}}),
        "fjord:site",
        None,
        "is missing",
    ),
    BadStack(
        "prod-without-config",
        lambda: parse_stack_doc("prod", {}),
        "fjord:site",
        None,
        "allowed: a mapping under `config: fjord:site:` in Pulumi.prod.yaml",
    ),
    # A misspelt top-level `config:` made `dev` fall back to the embedded site without a word.
    BadStack(
        "dev-config-key-typo",
        read_file(b"confg:\n  fjord:site: {name: mine}\n", "dev"),
        "confg",
        {"fjord:site": {"name": "mine"}},
        "unknown stack file key; did you mean 'config'? allowed keys: config, secretsprovider",
    ),
    BadStack(
        "unknown-top-level-key-hides-credentials",
        lambda: parse_stack_doc("dev", {"configs": {"fjord:bmcPassword": "hunter2"}}),
        "configs",
        {"fjord:bmcPassword": "[not shown]"},
        "did you mean 'config'?",
    ),
    BadStack(
        "site-is-a-secret",
        lambda: parse_stack_doc("prod", {"config": {"fjord:site": {"secure": "v1:abc"}}}),
        "fjord:site",
        "[secret]",
        "must be a mapping",
    ),
    BadStack(
        "site-is-a-list",
        lambda: parse_stack_doc("prod", {"config": {"fjord:site": [1, 2]}}),
        "fjord:site",
        [1, 2],
        "must be a mapping",
    ),
    BadStack(
        "config-is-a-string",
        lambda: parse_stack_doc("prod", {"config": "fjord:site"}),
        "config",
        "str",
        "must be a mapping",
    ),
    BadStack(
        "unknown-stack-file",
        lambda: read_stack("nowhere", STACKS),
        "stack",
        "nowhere",
        "allowed stacks: dev, narvik, uk",
    ),
    BadStack("site-not-a-mapping", lambda: load_site(["dev"]), "", "list", "must be a mapping"),
    BadStack(
        "dev-site-key-typo",
        lambda: parse_stack_doc("dev", {"config": {"fjord:sitee": {"name": "x"}}}),
        "fjord:sitee",
        {"name": "x"},
        "did you mean 'fjord:site'?",
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BAD_STACKS])
def test_bad_stack_file_is_rejected(case: BadStack) -> None:
    with pytest.raises(SiteError) as caught:
        case.run()
    problems = [p for p in caught.value.problems if p.path == case.path]
    assert problems, f"no problem at {case.path!r}; got: {caught.value.lines()}"
    problem = problems[0]
    assert case.hint in problem.message
    assert "\n" not in str(problem)
    if case.value is THE_FILE:  # a problem of the whole file shows the file
        assert str(problem.value).endswith("Pulumi.t.yaml")
        return
    assert problem.value == case.value
    assert shown(case.value) in str(problem)


def test_dev_stack_without_site_uses_the_embedded_default() -> None:
    cfg = parse_stack_doc("dev", {"config": {}})
    assert cfg.embedded_default
    assert cfg.site == default_site()


# --- a rejected input changes nothing; sites are frozen ---------------------------------------------


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in CASES if c.id in {"typo-in-cluster", "supernets-overlap"}]
)
def test_rejected_input_is_not_mutated(case: Bad) -> None:
    raw = BASES[case.base]()
    case.mutate(raw)
    before = copy.deepcopy(raw)
    with pytest.raises(SiteError):
        size_site(load_site(raw))
    assert raw == before
    # and it fails the same way a second time: nothing was cached or half-applied
    with pytest.raises(SiteError) as again:
        size_site(load_site(raw))
    assert any(p.path == case.path for p in again.value.problems)


@pytest.mark.parametrize("base", sorted(BASES))
def test_accepted_input_is_not_mutated(base: str) -> None:
    raw = BASES[base]()
    before = copy.deepcopy(raw)
    size_site(load_site(raw))
    assert raw == before


@pytest.mark.parametrize(
    ("target", "field", "value"),
    [
        pytest.param(lambda s: s, "name", "other", id="site.name"),
        pytest.param(lambda s: s.power, "grid_budget_mw", 1e6, id="power.grid_budget_mw"),
        pytest.param(lambda s: s.halls[0], "rack_positions", 10_000, id="halls[0].rack_positions"),
        pytest.param(lambda s: s.clusters[0], "gpus", 8, id="clusters[0].gpus"),
        pytest.param(lambda s: s.fabrics[0], "switch", "SN5600", id="fabrics[0].switch"),
        pytest.param(lambda s: s.ip_plan, "bmc", None, id="ip_plan.bmc"),
        pytest.param(lambda s: s.software, "driver_branch", 400, id="software.driver_branch"),
    ],
)
def test_site_models_are_frozen(target: Callable[[Any], Any], field: str, value: Any) -> None:
    site = load_site(dev_raw())
    model = target(site)
    before = getattr(model, field)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(model, field, value)
    assert getattr(model, field) == before


# --- every problem at once --------------------------------------------------------------------------


def test_all_model_problems_are_reported_at_once() -> None:
    raw = dev_raw()
    both(
        put("name", "Dev"),
        put("power.pue", 5),
        put("software.kubernetes", "1.24"),
        put("clusters[0].gpus", 30),
    )(raw)
    with pytest.raises(SiteError) as caught:
        load_site(raw)
    paths = {p.path for p in caught.value.problems}
    assert {"name", "power.pue", "software.kubernetes", "clusters[0].gpus"} <= paths
    assert len(caught.value.problems) >= 3


@pytest.mark.parametrize(
    ("edits", "paths"),
    [
        pytest.param(
            (
                put("power.grid_budget_mw", 1.0),
                put("storage[0].power_kw", 500.0),
                put("ip_plan.compute", "10.21.0.0/20"),
            ),
            {"power.grid_budget_mw", "storage[0].power_kw", "ip_plan.compute"},
            id="all-sizing-problems-at-once",
        ),
        pytest.param(
            # A rack over its power limit must not hide an over-budget site or a too-small supernet.
            (
                put("clusters[0].nodes_per_rack", 5),
                put("power.grid_budget_mw", 1.0),
                put("ip_plan.compute", "10.21.0.0/24"),
            ),
            {"clusters[0].nodes_per_rack", "power.grid_budget_mw", "ip_plan.compute"},
            id="cluster-limits-do-not-hide-site-limits",
        ),
    ],
)
def test_sizing_reports_every_problem_at_once(edits: tuple[Mutation, ...], paths: set[str]) -> None:
    raw = stack_raw("uk")
    both(*edits)(raw)
    site = load_site(raw)
    with pytest.raises(SiteError) as caught:
        size_site(site)
    assert paths <= {p.path for p in caught.value.problems}
    assert len(caught.value.problems) >= 3


def test_all_reference_problems_are_reported_at_once() -> None:
    raw = stack_raw("uk")
    both(
        put("clusters[0].hall", "hall-9"),
        put("clusters[1].compute_fabric", "storage"),
        put("storage[0].hall", "hall-3"),
        append("fabrics", OOB2),
    )(raw)
    with pytest.raises(SiteError) as caught:
        load_site(raw)
    paths = {p.path for p in caught.value.problems}
    assert {"clusters[0].hall", "clusters[1].compute_fabric", "storage[0].hall", "fabrics"} <= paths


# --- the real stacks are good -----------------------------------------------------------------------


def test_the_real_stacks_are_the_three_expected() -> None:
    assert list_stacks(STACKS) == ["dev", "narvik", "uk"]


@pytest.mark.parametrize("stack", ["dev", "uk", "narvik"])
def test_real_stack_loads_and_sizes(stack: str) -> None:
    cfg = read_stack(stack, STACKS)
    site = load_site(cfg.site, str(cfg.path or stack))
    size = size_site(site)
    assert size.site == site.name == stack
    assert size.gpus > 0
    assert size.power.headroom_kw >= 0
    assert all(h.used <= h.positions for h in size.halls)
    assert all(p.addresses <= p.capacity for p in size.pools)


def test_a_huge_value_is_shown_from_its_first_items_only() -> None:
    """YAML aliases let a few lines hold a value of 10**9 strings: a problem shows (and scans for secrets) only
    its first items, and one line of it."""
    from fjord.spec.errors import redact

    bomb: Any = ["lol"] * 10
    for _ in range(8):
        bomb = [bomb] * 10
    raw = dev_raw()
    raw["region"] = bomb
    with pytest.raises(SiteError) as caught:
        load_site(raw)
    (problem,) = caught.value.problems
    assert problem.path == "region"
    assert len(str(problem)) < 200

    def count(v: Any) -> int:
        return 1 + sum(count(x) for x in v) if isinstance(v, list) else 1

    assert count(redact(bomb)) <= 1100
    assert redact([{"secure": "v1:abc"}, {"token": "t0k3n"}]) == ["[secret]", {"token": "[not shown]"}]
