"""Stable allocation: once a node, rack or subnet is allocated, no later change of the spec moves it.

The property test drives random sequences of growth, shrinking, additions, removals and reordering over the
three stacks, carrying the allocation record from step to step as `fjord alloc` does, and checks after every
step that every node still there kept its name, rack and addresses, and that nothing overlaps.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fjord.cli.main import app
from fjord.sizing.alloc import Allocation, dump, parse
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import Node, SiteSize, size_site
from fjord.spec.errors import SiteError
from fjord.spec.load import default_site, load_site

from .conftest import STACKS, stack_site

runner = CliRunner()
STACK_NAMES = ["dev", "uk", "narvik"]


def raw_site(stack: str) -> dict[str, Any]:
    return copy.deepcopy(default_site()) if stack == "dev" else stack_site(stack)


def nodes_of(size: SiteSize, sample: bool) -> dict[str, Node]:
    """Every node, or for a big site the nodes of each cluster's first, middle and last two units (every
    unit's nodes derive from its own subnets and the cluster's racks the same way)."""
    out: dict[str, Node] = {}
    for c in size.clusters:
        units = c.units
        if sample and len(units) > 4:
            units = tuple(units[i] for i in sorted({0, len(units) // 2, len(units) - 2, len(units) - 1}))
        for u in units:
            out.update((n.name, n) for n in u.nodes())
    return out


def where(n: Node) -> tuple[Any, ...]:
    return (n.hall, n.rack, n.bmc, n.management, n.storage, n.compute)


def assert_no_overlap(size: SiteSize) -> None:
    # Racks: no position of a hall has two owners.
    seen: dict[tuple[str, int], str] = {}
    for r in size.placement:
        for p in range(r.first, r.last + 1):
            assert (r.hall, p) not in seen, f"{r.hall}-r{p:04d} is {seen[(r.hall, p)]}'s and {r.owner}'s"
            seen[(r.hall, p)] = r.owner
    # Subnets: disjoint within each purpose, and inside its supernet.
    nets: dict[str, list[ipaddress.IPv4Network]] = {}
    for c in size.clusters:
        for u in c.units:
            for key, cidr in u.subnets.items():
                nets.setdefault(key.split("-")[0], []).append(ipaddress.IPv4Network(cidr))
    for nets_of in nets.values():
        ordered = sorted(nets_of)
        for a, b in itertools.pairwise(ordered):
            assert not a.overlaps(b), f"{a} overlaps {b}"


def test_committed_records_are_current() -> None:
    for stack in STACK_NAMES:
        result = runner.invoke(app, ["alloc", stack, "--check", "--stacks-dir", str(STACKS)])
        assert result.exit_code == 0, result.output


def test_record_text_round_trips() -> None:
    for stack in STACK_NAMES:
        record = read_alloc(stack, STACKS)
        assert record is not None
        assert parse(dump(record, stack), "x") == record


def test_fresh_allocation_is_the_layout_sizing_always_gave() -> None:
    """A site built before the record existed gets the record of what it has: same racks, same addresses."""
    site = load_site(stack_site("uk"))
    fresh = size_site(site)
    recorded = size_site(site, read_alloc("uk", STACKS), require_current=True)
    assert {n.name: where(n) for n in fresh.hosts()} == {n.name: where(n) for n in recorded.hosts()}
    assert fresh.hosts()[0].rack == "hall-1-r0001"


def test_one_more_unit_in_h200_moves_no_b200_node() -> None:
    """The issue's case: a unit added to uk's h200 renumbered all 512 b200 nodes and moved racks."""
    raw = stack_site("uk")
    site = load_site(raw)
    record = read_alloc("uk", STACKS)
    before = {n.name: where(n) for n in size_site(site, record).hosts()}
    raw["clusters"][0]["scalable_units"] += 1
    grown = load_site(raw)
    after_size = size_site(grown, record)
    after = {n.name: where(n) for n in after_size.hosts()}
    assert all(after[name] == w for name, w in before.items())
    assert len(after) == len(before) + 32
    # Without the record, sizing in spec order moves them (what the record prevents).
    fresh = {n.name: where(n) for n in size_site(grown).hosts()}
    assert any(fresh[name] != w for name, w in before.items() if name.startswith("uk-b200"))
    # The program refuses the grown spec with the old record: it never renumbers on its own.
    with pytest.raises(SiteError, match=r"fjord alloc uk"):
        size_site(grown, record, require_current=True)
    assert_no_overlap(after_size)


def test_moves_are_refused_naming_the_field() -> None:
    raw = stack_site("uk")
    record = read_alloc("uk", STACKS)
    raw["clusters"][0]["hall"] = "hall-2"
    with pytest.raises(SiteError) as exc:
        size_site(load_site(raw), record)
    assert exc.value.problems[0].path == "clusters[0].hall"
    assert "stand in hall-1" in exc.value.problems[0].message
    raw = stack_site("uk")
    raw["ip_plan"]["bmc"] = "10.30.0.0/20"
    with pytest.raises(SiteError) as exc:
        size_site(load_site(raw), record)
    assert exc.value.problems[0].path == "ip_plan.bmc"


def test_program_refuses_a_missing_record() -> None:
    site = load_site(stack_site("uk"))
    with pytest.raises(SiteError, match="is missing"):
        size_site(site, None, require_current=True)


def test_alloc_writes_checks_and_refuses_removing_a_cluster(tmp_path: Path) -> None:
    import yaml

    raw = stack_site("uk")
    path = tmp_path / "Pulumi.lab.yaml"
    path.write_text(yaml.safe_dump({"config": {"fjord:site": raw}}), encoding="utf-8")
    check = runner.invoke(app, ["alloc", "lab", "--check", "--stacks-dir", str(tmp_path)])
    assert check.exit_code == 1
    assert "not current" in check.output
    assert runner.invoke(app, ["alloc", "lab", "--stacks-dir", str(tmp_path)]).exit_code == 0
    record = (tmp_path / "Pulumi.lab.alloc.yaml").read_text(encoding="utf-8")
    # Removing a cluster: refused (the record is not touched) until the stack means it.
    raw["clusters"] = raw["clusters"][1:]
    raw["tenants"][0]["gpu_quotas"] = []
    path.write_text(yaml.safe_dump({"config": {"fjord:site": raw}}), encoding="utf-8")
    refused = runner.invoke(app, ["alloc", "lab", "--stacks-dir", str(tmp_path)])
    assert refused.exit_code == 1
    assert "cluster 'h200'" in refused.output
    assert "fjord:allowRemove" in refused.output
    assert (tmp_path / "Pulumi.lab.alloc.yaml").read_text(encoding="utf-8") == record
    path.write_text(yaml.safe_dump({"config": {"fjord:site": raw, "fjord:allowRemove": ["h200"]}}), encoding="utf-8")
    assert runner.invoke(app, ["alloc", "lab", "--stacks-dir", str(tmp_path)]).exit_code == 0
    after = read_alloc("lab", tmp_path)
    assert after is not None
    assert set(after.clusters) == {"b200"}
    assert after.clusters["b200"] == parse(record, "x").clusters["b200"]  # b200 untouched
    assert runner.invoke(app, ["stacks", "--stacks-dir", str(tmp_path)]).output.split() == ["lab"]


# The property test.

Op = tuple[str, int, int]


def apply(raw: dict[str, Any], op: Op) -> None:
    """One change of the spec, as an operator would make it (some make the site impossible: then rejected)."""
    kind, a, b = op
    clusters = raw["clusters"]
    c = clusters[a % len(clusters)]
    if kind == "grow":
        if c.get("scalable_units") is not None:
            c["scalable_units"] += 1 + b % 2
        else:
            step = 72 if "NVL72" in c["sku"] else 8
            c["gpus"] += step * (1 + b % 40)
    elif kind == "shrink":
        if c.get("scalable_units") is not None:
            c["scalable_units"] = max(1, c["scalable_units"] - 1 - b % 2)
        else:
            step = 72 if "NVL72" in c["sku"] else 8
            c["gpus"] = max(step * 2, c["gpus"] - step * (1 + b % 40))
    elif kind == "add-cluster":
        name = f"x{len(clusters)}{b % 10}"
        if all(x["name"] != name for x in clusters):
            new = {k: v for k, v in c.items() if k not in ("gpus", "scalable_units", "name")}
            clusters.append({**new, "name": name, "scalable_units": 1 + b % 2})
    elif kind == "remove-cluster" and len(clusters) > 1:
        gone = clusters.pop(a % len(clusters))["name"]
        for t in raw.get("tenants", []):
            t["gpu_quotas"] = [q for q in t.get("gpu_quotas", []) if q["cluster"] != gone]
    elif kind == "add-hall":
        hall = raw["halls"][b % len(raw["halls"])]
        raw["halls"].append({**hall, "name": f"hall-new{len(raw['halls'])}"})
    elif kind == "add-storage":
        raw.setdefault("storage", []).append(
            {
                "name": f"tier{len(raw['storage'])}",
                "kind": "block",
                "capacity_pb": 1.0,
                "hall": raw["halls"][b % len(raw["halls"])]["name"],
                "racks": 1 + b % 3,
                "power_kw": 10.0,
            }
        )
    elif kind == "add-tenant":
        raw.setdefault("tenants", []).append({"name": f"tenant{len(raw['tenants'])}"})
    elif kind == "reorder":
        key = ("clusters", "halls", "storage", "fabrics", "tenants")[a % 5]
        items = raw.get(key) or []
        if len(items) > 1:
            k = b % len(items)
            raw[key] = items[k:] + items[:k]


OPS = st.tuples(
    st.sampled_from(
        ["grow", "shrink", "add-cluster", "remove-cluster", "add-hall", "add-storage", "add-tenant", "reorder"]
    ),
    st.integers(0, 1000),
    st.integers(0, 1000),
)


def roomy(raw: dict[str, Any]) -> dict[str, Any]:
    """The stack with power and floor space to spare, so that most random growth is possible."""
    raw["power"]["grid_budget_mw"] = 5000.0
    for hall in raw["halls"]:
        hall["rack_positions"] = hall["rack_positions"] * 3
    return raw


@pytest.mark.parametrize("stack", STACK_NAMES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=6))
def test_no_change_of_the_spec_moves_an_allocated_node(stack: str, ops: list[Op]) -> None:
    raw = roomy(raw_site(stack))
    big = stack == "narvik"
    size = size_site(load_site(raw))
    record: Allocation = size.alloc
    nodes = nodes_of(size, big)
    for op in ops:
        candidate = copy.deepcopy(raw)
        apply(candidate, op)
        try:
            new_size = size_site(load_site(candidate), record)
        except SiteError:
            continue  # rejected (a limit broken): nothing changes, the record stays as it was
        new_nodes = nodes_of(new_size, big)
        for name, n in new_nodes.items():
            if name in nodes:
                assert where(n) == where(nodes[name]), f"{op}: {name} moved"
        # What the record held and the spec still needs is where it was.
        for cname, c in new_size.alloc.clusters.items():
            old = record.clusters.get(cname)
            if old is not None:
                kept = min(len(old.units), len(c.units))
                assert c.units[:kept] == old.units[:kept], f"{op}: {cname}'s subnets moved"
                racks = min(len(old.compute_racks), len(c.compute_racks))
                assert c.compute_racks[:racks] == old.compute_racks[:racks], f"{op}: {cname}'s racks moved"
        for tier, r in new_size.alloc.storage.items():
            if tier in record.storage:
                old_racks = record.storage[tier].racks
                assert r.racks[: len(old_racks)] == old_racks[: len(r.racks)]
        assert_no_overlap(new_size)
        # The record is a fixed point: allocating again from it changes nothing.
        assert size_site(load_site(candidate), new_size.alloc, require_current=True).alloc == new_size.alloc
        raw, record, nodes = candidate, new_size.alloc, {**nodes, **new_nodes}
        # Released nodes are forgotten: a node removed and added again may get new addresses.
        nodes = {k: v for k, v in nodes.items() if k in new_nodes}
