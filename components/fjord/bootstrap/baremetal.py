"""The bare-metal phase through the Pulumi engine: which resources a bootstrap `up` targets, and what the
engine's NodePool records say about each node. Pure (no engine, no BMC): `fjord.cli.bootstrap` runs it.

The phase runs fjord's program with the bare-metal layer only (`fjord.program.main(bare_metal_only=True)`:
no Kubernetes platform, no host configuration) and limits the `up` to the NodePools of the scalable units it
provisions and their parent components (Pulumi's `--target`): the engine refuses to create a targeted
resource whose parent it skips, and it leaves every resource it was not given alone (a later `fjord up` adds
the rest). The URNs are built here the way the components name their resources (`fjord.components`), and
tests/test_bootstrap_engine.py checks them against the program's own registrations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fjord.components.gpu_cluster import cluster_resource_name, unit_resource_name
from fjord.sizing.site import SiteSize

PROJECT = "fjord"
SITE_TYPE = "fjord:components:Site"
CLUSTER_TYPE = "fjord:components:GpuCluster"
UNIT_TYPE = "fjord:components:ScalableUnit"
POOL_TYPE = "pulumi-python:dynamic/baremetal:NodePool"
POOL_SUFFIX = "-baremetal"


def urn(stack: str, types: Iterable[str], name: str) -> str:
    """A resource's URN: its type chained after its parents' types (Pulumi's format)."""
    return f"urn:pulumi:{stack}::{PROJECT}::{'$'.join(types)}::{name}"


@dataclass(frozen=True)
class UnitPool:
    """One scalable unit's NodePool: its resource, its ancestors and its nodes."""

    cluster: str
    unit: str
    """The unit's name in the NodePool's inputs (`unit`), e.g. h100-su000."""
    nodes: tuple[str, ...]
    urn: str
    parents: tuple[str, ...]
    """The URNs of the Site, GpuCluster and ScalableUnit components above the pool, outermost first."""


def unit_pools(stack: str, site_name: str, size: SiteSize) -> list[UnitPool]:
    """Every scalable unit's NodePool in the order the program registers them."""
    pools: list[UnitPool] = []
    site_urn = urn(stack, [SITE_TYPE], site_name)
    for c in size.clusters:
        cluster_name = cluster_resource_name(site_name, c.name)
        cluster_urn = urn(stack, [SITE_TYPE, CLUSTER_TYPE], cluster_name)
        for u in c.units:
            unit_name = unit_resource_name(cluster_name, u.index)
            unit_urn = urn(stack, [SITE_TYPE, CLUSTER_TYPE, UNIT_TYPE], unit_name)
            pool_urn = urn(stack, [SITE_TYPE, CLUSTER_TYPE, UNIT_TYPE, POOL_TYPE], unit_name + POOL_SUFFIX)
            nodes = tuple(n.name for n in u.nodes())
            pools.append(UnitPool(c.name, u.name, nodes, pool_urn, (site_urn, cluster_urn, unit_urn)))
    return pools


def targets(pools: Iterable[UnitPool]) -> list[str]:
    """The URNs an `up` of these pools must target: each pool and its parents, once each, parents first."""
    seen: dict[str, None] = {}
    for p in pools:
        for u in (*p.parents, p.urn):
            seen.setdefault(u, None)
    return list(seen)


@dataclass(frozen=True)
class Selection:
    """Which units the phase takes through the engine this time, and which it holds back."""

    pools: tuple[UnitPool, ...]
    held: dict[str, str]
    """unit -> why it is held back (a node of it failed inspection): the engine converges a unit as a
    whole, so a unit with a node that did not pass inspection is not taken on until a resume."""


def select(
    pools: Iterable[UnitPool], ready: set[str], failed: Mapping[str, str], direct: Iterable[str] = ()
) -> Selection:
    """The units with a node to provision (`ready`: inspected, not yet provisioned) and no node that failed
    inspection (`failed`: node -> reason); the units with such a node are held back with the reason.

    `direct`: nodes provisioned without the engine (`--no-engine`), which the engine's state does not have. A
    unit with one is held back too: its NodePool would be created, and a create takes every node of the unit
    on for the first time (boot override, restart into the install), nodes in service included. `fjord up`
    takes such a unit into the state first (its nodes already match, so none is restarted)."""
    chosen: list[UnitPool] = []
    held: dict[str, str] = {}
    outside = set(direct)
    for p in pools:
        if not ready.intersection(p.nodes):
            continue
        bad = [n for n in p.nodes if n in failed]
        if bad:
            held[p.unit] = f"held back: {', '.join(bad)} failed inspection ({failed[bad[0]]})"
            continue
        taken = [n for n in p.nodes if n in outside]
        if taken:
            held[p.unit] = (
                f"held back: {', '.join(taken)} provisioned without the engine (--no-engine) and not in the Pulumi"
                " state; run `fjord up` first (it takes the unit on without restarting its nodes), or --no-engine"
            )
            continue
        chosen.append(p)
    return Selection(tuple(chosen), held)


@dataclass(frozen=True)
class NodeResult:
    node: str
    ok: bool
    record: dict[str, Any]
    """The NodePool's record of the node (power, boot, BIOS, actions, serial, ...) when ok."""
    error: str


def node_results(pool: UnitPool, outputs: Mapping[str, Any] | None) -> dict[str, NodeResult]:
    """What the engine's NodePool outputs (`state`: node -> record, `failed`: node -> error) say about each
    node of the unit; a node in neither (the resource did not finish) is an error saying so."""
    outs = outputs or {}
    state: Mapping[str, Any] = outs.get("state") or {}
    failed: Mapping[str, Any] = outs.get("failed") or {}
    results: dict[str, NodeResult] = {}
    for n in pool.nodes:
        if n in failed:
            results[n] = NodeResult(n, False, {}, str(failed[n]))
        elif isinstance(state.get(n), Mapping):
            results[n] = NodeResult(n, True, dict(state[n]), "")
        else:
            results[n] = NodeResult(n, False, {}, f"the engine's {pool.unit}{POOL_SUFFIX} has no record of the node")
    return results
