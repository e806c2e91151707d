"""`fjord bootstrap`'s bare-metal phase through the Pulumi engine, without the engine: what it targets, what it
holds back, how it reads the NodePools' records, and what it says when the engine is not there.

The targeted `up` itself runs in tests/test_bootstrap_e2e.py (real engine, Ceph RGW state, sushy BMCs).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pulumi
import pytest

from fjord.bootstrap import baremetal as bm
from fjord.plan.mocks import Registration
from fjord.sizing.alloc import alloc_path, dump
from fjord.sizing.site import validate_site

from .conftest import stack_site

STACK = "test"  # the mock runtime's stack (tests/conftest.py)
K8S = ("kubernetes:", "pulumi:providers:kubernetes")
HOSTS = "pulumi-python:dynamic/hosts:HostConfig"


def _program(raw: dict[str, object], folder: Path, bare_metal_only: bool) -> None:
    from fjord import program

    _, size = validate_site(raw)
    alloc_path(STACK, folder).write_text(dump(size.alloc, STACK), encoding="utf-8")
    pulumi.runtime.set_all_config({"fjord:site": json.dumps(raw)})
    try:

        @pulumi.runtime.test
        def run() -> None:
            program.main(folder, bare_metal_only=bare_metal_only, bmc_password="not-a-real-password")

        run()
    finally:
        pulumi.runtime.set_all_config({})


def engine_urns(regs: list[Registration]) -> dict[str, Registration]:
    """The registrations by the URN the real engine gives them: the resource's type after the whole chain of
    its parents' types (the mock runtime's own URNs chain only the parent's type)."""
    by_mock = {r.urn: r for r in regs}
    out: dict[str, Registration] = {}
    for r in regs:
        types = [r.type]
        parent = by_mock.get(r.parent)
        while parent is not None and parent.type != "pulumi:pulumi:Stack":
            types.insert(0, parent.type)
            parent = by_mock.get(parent.parent)
        out[bm.urn(STACK, types, r.name)] = r
    return out


def test_the_targets_are_the_programs_node_pools_and_their_parents(
    registrations: list[Registration], tmp_path: Path
) -> None:
    """The URNs bootstrap targets are exactly those the program registers for the NodePools and their parent
    components, and every parent of a targeted resource is targeted too (the engine refuses to create a
    targeted resource under a parent it skips). The bare-metal-only program registers no Kubernetes object
    and no HostConfig, so its targeted up needs no Kubernetes provider and configures no host."""
    raw = stack_site("uk")
    spec, size = validate_site(raw)
    pools = bm.unit_pools(STACK, spec.name, size)
    assert len(pools) == sum(len(c.units) for c in size.clusters) > 1
    assert {n for p in pools for n in p.nodes} == {h.name for h in size.hosts()}

    _program(raw, tmp_path, bare_metal_only=False)
    full = engine_urns(registrations)
    full_types = Counter(r.type for r in registrations)
    assert any(t.startswith(K8S) for t in full_types), (
        "the uk site has Kubernetes clusters: the full program registers them"
    )
    assert full_types[HOSTS] > 0
    registrations.clear()

    _program(raw, tmp_path, bare_metal_only=True)
    regs = engine_urns(registrations)
    real = {r.urn: u for u, r in regs.items()}  # mock URN -> engine URN
    assert not [t for t in Counter(r.type for r in registrations) if t.startswith(K8S) or t == HOSTS]
    registered_pools = {u for u, r in regs.items() if r.type == bm.POOL_TYPE}
    assert registered_pools == {p.urn for p in pools}
    assert registered_pools <= set(full)  # the same resources the whole program (`fjord up`) manages

    targeted = bm.targets(pools)
    assert len(targeted) == len(set(targeted))
    assert set(targeted) <= set(regs)
    assert set(targeted) <= set(full)
    for u in targeted:
        parent = real.get(regs[u].parent)
        while parent is not None and regs[parent].type != "pulumi:pulumi:Stack":
            assert parent in targeted, f"{u}: its parent {parent} is not targeted"
            parent = real.get(regs[parent].parent)
    assert {regs[u].type for u in targeted} == {bm.SITE_TYPE, bm.CLUSTER_TYPE, bm.UNIT_TYPE, bm.POOL_TYPE}
    # only the pools' units: a pool list of one unit targets that unit's chain and nothing else
    one = bm.targets(pools[:1])
    assert one == [*pools[0].parents, pools[0].urn]


def test_a_unit_with_a_node_that_failed_inspection_is_held_back() -> None:
    pools = [
        bm.UnitPool("c", "c-su000", ("a0", "a1"), "urn:a", ("urn:site", "urn:c", "urn:su0")),
        bm.UnitPool("c", "c-su001", ("b0", "b1"), "urn:b", ("urn:site", "urn:c", "urn:su1")),
        bm.UnitPool("c", "c-su002", ("d0",), "urn:d", ("urn:site", "urn:c", "urn:su2")),
    ]
    sel = bm.select(pools, ready={"a0", "a1", "b1"}, failed={"b0": "inspect: health Critical"})
    assert [p.unit for p in sel.pools] == ["c-su000"]  # c-su002 has nothing to do
    assert sel.held == {"c-su001": "held back: b0 failed inspection (inspect: health Critical)"}
    assert bm.targets(sel.pools) == ["urn:site", "urn:c", "urn:su0", "urn:a"]
    assert bm.select(pools, ready=set(), failed={}).pools == ()
    # A unit with a node provisioned without the engine (--no-engine) would be created, taking every node on
    # again (a restart into the install): held back, saying what to do.
    sel = bm.select(pools, ready={"a0", "b1"}, failed={}, direct={"a1"})
    assert [p.unit for p in sel.pools] == ["c-su001"]
    assert sel.held["c-su000"].startswith("held back: a1 provisioned without the engine (--no-engine)")


def test_node_states_come_from_the_node_pools_records() -> None:
    pool = bm.UnitPool("c", "c-su000", ("n0", "n1", "n2"), "urn:p", ())
    outs = {"state": {"n0": {"power": "On", "boot": "Pxe"}}, "failed": {"n1": "timeout: no answer (after 3 tries)"}}
    got = bm.node_results(pool, outs)
    assert got["n0"].ok
    assert got["n0"].record == {"power": "On", "boot": "Pxe"}
    assert not got["n1"].ok
    assert got["n1"].error == "timeout: no answer (after 3 tries)"
    assert not got["n2"].ok
    assert "has no record of the node" in got["n2"].error
    assert all(not r.ok for r in bm.node_results(pool, None).values())


def test_the_provider_reports_each_node_it_finishes_to_the_progress_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fjord.adapters.redfish import Outcome, RedfishError
    from fjord.providers.baremetal import PROGRESS_ENV, progress_sink

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_sink("u") is None
    path = tmp_path / "nodes.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    sink = progress_sink("c-su000")
    assert sink is not None
    sink(Outcome("n0", value={"power": "On"}))
    sink(Outcome("n1", error=RedfishError("n1", "timeout", "no answer")))
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert lines == [{"unit": "c-su000", "node": "n0", "ok": True}, {"unit": "c-su000", "node": "n1", "ok": False}]


def test_without_the_engine_the_phase_is_blocked_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fjord.cli.bootstrap import PhaseBlocked, _engine_ready

    monkeypatch.setenv("FJORD_PULUMI_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("FJORD_PULUMI_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PhaseBlocked) as info:
        _engine_ready()
    text = str(info.value)
    assert text.startswith("no Pulumi engine: no Pulumi CLI v")
    assert ".ci/setup-pulumi.sh" in text
    assert "--no-engine" in text


def test_without_a_passphrase_the_phase_is_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fjord.cli.bootstrap import PhaseBlocked, _engine_ready
    from fjord.engine import PROVIDER_SHIM, sdk_version

    bin_dir = tmp_path / sdk_version() / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("pulumi", PROVIDER_SHIM):
        (bin_dir / name).write_text("#!/bin/sh\n", encoding="utf-8")
    monkeypatch.setenv("FJORD_PULUMI_CACHE", str(tmp_path))
    monkeypatch.delenv("FJORD_PULUMI_BIN", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(PhaseBlocked, match="no secrets passphrase for the Pulumi engine: set PULUMI_CONFIG_PASSPHRASE"):
        _engine_ready()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "x")
    assert _engine_ready() == bin_dir
