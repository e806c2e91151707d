"""The cluster's drained rollout without hosts: its batch plan, its stop rule, what an update rolls, and the
program's wiring (one ClusterRollout per cluster, which every unit's HostConfig waits for). The rollout on real
hosts with the real Slurm drain: tests/test_slurm_testbed.py::test_the_rollout_is_per_cluster_and_stops_it_whole.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from fjord.components.site import Site, SiteArgs
from fjord.engine import left_behind
from fjord.hosts.rollout import BatchOutcome, batch_plan, over_budget, roll
from fjord.plan.mocks import Registration
from fjord.providers import rollout as rollout_provider
from fjord.providers.playbook import HostConfigProvider, RolloutMoved, update_runs
from fjord.providers.rollout import ClusterRolloutProvider, due
from fjord.sizing.site import size_site
from fjord.spec.load import load_site
from fjord.spec.models import Upgrade

from .conftest import stack_site

# A 4-node cluster over two scalable units of two nodes.
UNITS = [[f"dev-h100-su{u:03d}-n{n:03d}" for n in range(2)] for u in range(2)]
HOSTS = [h for unit in UNITS for h in unit]


def test_batches_are_a_share_of_the_whole_cluster_across_its_units() -> None:
    plan = batch_plan(HOSTS, len(HOSTS), Upgrade(batch_percent=25))
    assert plan == [(h,) for h in HOSTS]  # one node of four at a time, unit 0 then unit 1
    assert batch_plan(HOSTS, 4, Upgrade(batch_percent=50)) == [tuple(UNITS[0]), tuple(UNITS[1])]
    # 75 % of four is three nodes: a batch holds the last node of unit 0 and the first of unit 1... in order.
    assert batch_plan(HOSTS, 4, Upgrade(batch_percent=75)) == [tuple(HOSTS[:3]), (HOSTS[3],)]
    # A 512-node cluster (16 units of 32) at 10 %: batches of 52 nodes, spanning units, 10 of them.
    big = [f"uk-b200-su{u:03d}-n{n:03d}" for u in range(16) for n in range(32)]
    plan = batch_plan(big, len(big), Upgrade(batch_percent=10))
    assert [len(b) for b in plan] == [52] * 9 + [44]
    assert plan[0][-1] == "uk-b200-su001-n019"  # across the first unit boundary
    assert [h for b in plan for h in b] == big
    # Rolling only the hosts left behind keeps the cluster's batch size (not a share of the few left).
    assert batch_plan(big[:10], len(big), Upgrade(batch_percent=10)) == [tuple(big[:10])]
    assert batch_plan([], 4, Upgrade()) == []


def test_the_batch_size_is_what_fjord_diff_shows() -> None:
    for nodes, pct, want in ((4, 25, 1), (4, 10, 1), (5, 25, 2), (512, 10, 52), (1, 100, 1), (0, 10, 1)):
        assert Upgrade(batch_percent=pct).batch_nodes(nodes) == want, (nodes, pct)


def test_the_stop_rule_is_more_than_the_budget_of_a_batch() -> None:
    assert over_budget(10, 1, 0)
    assert not over_budget(10, 0, 0)
    assert not over_budget(10, 1, 10)  # 10 % failed: the budget is reached, not exceeded
    assert over_budget(10, 2, 10)
    assert over_budget(1, 1, 99)
    assert not over_budget(1, 1, 100)


def _runner(failing: set[str], seen: list[tuple[str, ...]]) -> Any:
    def run(batch: tuple[str, ...]) -> BatchOutcome:
        seen.append(batch)
        return BatchOutcome(
            done=tuple(h for h in batch if h not in failing), failed=tuple(h for h in batch if h in failing)
        )

    return run


def test_a_failure_past_the_budget_stops_the_rest_of_the_cluster_in_every_unit() -> None:
    seen: list[tuple[str, ...]] = []
    plan = batch_plan(HOSTS, 4, Upgrade(batch_percent=25))
    result = roll(plan, 0, _runner({HOSTS[1]}, seen))
    # Unit 0's second node failed: neither node of unit 1 is run (drained) at all.
    assert seen == [(HOSTS[0],), (HOSTS[1],)]
    assert result.done == (HOSTS[0],)
    assert result.failed == (HOSTS[1],)
    assert result.not_reached == tuple(UNITS[1])
    assert result.pending == (HOSTS[1], *UNITS[1])
    assert result.stopped.startswith("batch 2 of 4: 1 of 1 nodes failed, more than")
    # Within the budget the rollout goes on to the end.
    seen.clear()
    half = roll(batch_plan(HOSTS, 4, Upgrade(batch_percent=50)), 50, _runner({HOSTS[0]}, seen))
    assert seen == [tuple(UNITS[0]), tuple(UNITS[1])]
    assert (half.stopped, half.not_reached, half.failed) == ("", (), (HOSTS[0],))


def test_a_crashed_batch_stops_the_rollout_and_counts_as_failed() -> None:
    def crash(batch: tuple[str, ...]) -> BatchOutcome:
        return BatchOutcome((), (), error="ERROR! the role 'x' was not found")

    result = roll(batch_plan(HOSTS, 4, Upgrade(batch_percent=50)), 100, crash)
    assert result.batches == (tuple(UNITS[0]),)
    assert result.failed == tuple(UNITS[0])
    assert result.not_reached == tuple(UNITS[1])
    assert "did not run to its end: ERROR! the role 'x' was not found" in result.stopped


# --- the ClusterRollout provider: what an update rolls, with the batches run by a stand-in ------------------------

POLICY = {"playbook": "upgrade-gpu-stack.yml", "batch_percent": 25, "max_fail_percentage": 0}
IN_SERVICE: dict[str, Any] = {
    "site": "dev",
    "cluster": "h100",
    "inventory": "{}",
    "hosts": HOSTS,
    "versions": {"cuda": "12.8", "bios": {}},
    "playbooks_digest": "b" * 64,
    "rollout": POLICY,
}


def test_what_an_update_rolls() -> None:
    bump = IN_SERVICE | {"versions": {"cuda": "12.9", "bios": {}}}
    work = due(IN_SERVICE, bump)
    assert (work.hosts, work.reboot) == (tuple(HOSTS), False)
    assert work.batches == tuple((h,) for h in HOSTS)
    # New hosts are not in service: their unit's HostConfig gives them site.yml.
    grown = bump | {"hosts": [*HOSTS, "dev-h100-su002-n000"]}
    assert due(IN_SERVICE, grown).hosts == tuple(HOSTS)
    # A BIOS change reboots each drained node; a configuration-only change rolls nothing.
    assert due(IN_SERVICE, IN_SERVICE | {"versions": {"cuda": "12.8", "bios": {"X": 1}}}).reboot is True
    assert due(IN_SERVICE, IN_SERVICE | {"inventory": '{"all": {}}'}).hosts == ()
    # Hosts left behind are rolled again (with the reboot their rollout needed), the rest not.
    left = IN_SERVICE | {"rollout_pending": HOSTS[2:], "reboot_pending": True}
    again = due(left, IN_SERVICE)
    assert (again.hosts, again.reboot, again.batches) == (tuple(HOSTS[2:]), True, ((HOSTS[2],), (HOSTS[3],)))
    assert ClusterRolloutProvider().diff("dev/h100", left, IN_SERVICE).changes is True
    assert ClusterRolloutProvider().diff("dev/h100", IN_SERVICE, dict(IN_SERVICE)).changes is False
    # A state without recorded hosts counts every host in service.
    assert due({k: v for k, v in IN_SERVICE.items() if k != "hosts"}, bump).hosts == tuple(HOSTS)


def test_create_rolls_nothing_and_update_stops_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, ...]] = []
    monkeypatch.setattr(
        ClusterRolloutProvider, "_run", lambda self, props, batch, reboot: _runner({HOSTS[1]}, seen)(batch)
    )
    provider = ClusterRolloutProvider()
    created = dict(provider.create(dict(IN_SERVICE)).outs or {})
    assert seen == []
    assert (created["rollout_pending"], created["hosts"]) == ([], HOSTS)
    bump = IN_SERVICE | {"versions": {"cuda": "12.9", "bios": {}}}
    outs = dict(provider.update("dev/h100", created, dict(bump)).outs or {})
    assert seen == [(HOSTS[0],), (HOSTS[1],)]
    assert outs["batches"] == [[HOSTS[0]], [HOSTS[1]]]
    assert outs["failed_hosts"] == [HOSTS[1]]
    assert outs["rollout_pending"] == [HOSTS[1], *UNITS[1]]
    assert "more than the cluster's upgrade.max_fail_percentage (0 %)" in outs["stopped"]
    lines = left_behind("h100-rollout", outs)
    assert f"h100-rollout: {HOSTS[1]}: failed" in lines
    assert f"h100-rollout: {HOSTS[3]}: not rolled yet (the rollout stopped before it)" in lines
    # The next up rolls exactly what was left, once the failure is mended.
    seen.clear()
    monkeypatch.setattr(ClusterRolloutProvider, "_run", lambda self, props, batch, reboot: _runner(set(), seen)(batch))
    assert provider.diff("dev/h100", outs, dict(bump)).changes is True
    final = dict(provider.update("dev/h100", outs, dict(bump)).outs or {})
    assert seen == [(HOSTS[1],), (HOSTS[2],), (HOSTS[3],)]
    assert (final["rollout_pending"], final["stopped"]) == ([], "")
    assert provider.diff("dev/h100", final, dict(bump)).changes is False


def test_a_declared_power_off_drains_every_host_and_power_on_returns_only_those_it_took_out() -> None:
    on = IN_SERVICE | {"power": "on"}
    off = on | {"power": "off"}
    work = due(on, off)
    assert (work.hosts, work.power_off, work.boot_wait) == (tuple(HOSTS), True, False)
    assert work.batches == tuple((h,) for h in HOSTS)  # the cluster's batches, as for an upgrade
    assert due({k: v for k, v in on.items() if k != "power"}, off).power_off is True  # a state from before: on
    assert due(on, dict(on)).hosts == ()
    # The first two were powered off, then the rollout stopped: power back on returns exactly those two (and
    # rolls what was left pending), each waiting for its node to boot first.
    stopped = off | {"powered_off": HOSTS[:2], "rollout_pending": HOSTS[2:]}
    back = due(stopped, on)
    assert (back.hosts, back.power_off, back.boot_wait) == (tuple(HOSTS), False, True)
    assert due(off | {"powered_off": HOSTS[:2]}, on).hosts == tuple(HOSTS[:2])
    # Kept off, the rest is powered off at the next up.
    assert due(stopped, dict(off)).hosts == tuple(HOSTS[2:])


def test_the_rollout_records_what_it_powered_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, tuple[str, ...]]] = []

    def off(self: Any, props: Any, batch: tuple[str, ...]) -> BatchOutcome:
        seen.append(("power-off", batch))
        return BatchOutcome(tuple(h for h in batch if h != HOSTS[2]), tuple(h for h in batch if h == HOSTS[2]))

    def wait(self: Any, props: Any, batch: tuple[str, ...]) -> BatchOutcome:
        seen.append(("wait", batch))
        return BatchOutcome(batch, ())

    def upgrade(self: Any, props: Any, batch: tuple[str, ...], reboot: bool) -> BatchOutcome:
        seen.append(("upgrade", batch))
        return BatchOutcome(batch, ())

    monkeypatch.setattr(ClusterRolloutProvider, "_power_off", off)
    monkeypatch.setattr(ClusterRolloutProvider, "_wait", wait)
    monkeypatch.setattr(ClusterRolloutProvider, "_run", upgrade)
    provider = ClusterRolloutProvider()
    on = IN_SERVICE | {"power": "on"}
    outs = dict(provider.update("dev/h100", dict(on), on | {"power": "off"}).outs or {})
    assert seen == [("power-off", (h,)) for h in HOSTS[:3]]  # the third could not be drained: stop
    assert (outs["powered_off"], outs["rollout_pending"]) == (HOSTS[:2], HOSTS[2:])
    seen.clear()
    back = dict(provider.update("dev/h100", outs, dict(on)).outs or {})
    assert seen == [step for h in HOSTS for step in (("wait", (h,)), ("upgrade", (h,)))]
    assert (back["powered_off"], back["rollout_pending"]) == ([], [])


def test_a_node_that_does_not_boot_is_not_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Power back on, batches of two: one node of the first batch does not come back; the other is validated
    and returned, the one that did not boot counts against the budget and stops the cluster."""
    upgraded: list[tuple[str, ...]] = []

    def wait(self: Any, props: Any, batch: tuple[str, ...]) -> BatchOutcome:
        return BatchOutcome(tuple(h for h in batch if h != HOSTS[1]), (), tuple(h for h in batch if h == HOSTS[1]))

    def upgrade(self: Any, props: Any, batch: tuple[str, ...], reboot: bool) -> BatchOutcome:
        upgraded.append(batch)
        return BatchOutcome(batch, ())

    monkeypatch.setattr(ClusterRolloutProvider, "_wait", wait)
    monkeypatch.setattr(ClusterRolloutProvider, "_run", upgrade)
    off = IN_SERVICE | {"power": "off", "powered_off": HOSTS, "rollout": POLICY | {"batch_percent": 50}}
    outs = dict(ClusterRolloutProvider().update("dev/h100", off, off | {"power": "on"}).outs or {})
    assert upgraded == [(HOSTS[0],)]
    assert (outs["unreachable_hosts"], outs["rollout_pending"]) == ([HOSTS[1]], [HOSTS[1], *HOSTS[2:]])
    assert outs["powered_off"] == HOSTS[1:]  # still to be returned
    assert outs["boot_wait_pending"] is True


# --- HostConfig: site.yml for new hosts and configuration, never the rollout -----------------------------------

UNIT: dict[str, Any] = {
    "site": "dev",
    "group": "su_h100_000",
    "playbook": "site.yml",
    "inventory_digest": "a" * 64,
    "versions": {"cuda": "12.8", "bios": {}},
    "playbooks_digest": "b" * 64,
    "hosts": UNITS[0],
}


def test_host_config_never_rolls_and_keeps_site_yml_off_hosts_the_rollout_left() -> None:
    bump = UNIT | {"versions": {"cuda": "12.9", "bios": {}}}
    assert update_runs(UNIT, bump) == []  # the cluster's rollout did it
    grown = bump | {"hosts": [*UNITS[0], "dev-h100-su000-n002"]}
    assert [(r.playbook, r.limit) for r in update_runs(UNIT, grown)] == [("site.yml", ("dev-h100-su000-n002",))]
    config = UNIT | {"inventory_digest": "c" * 64, "rollout_hosts_pending": [UNITS[0][1]]}
    assert [(r.playbook, r.limit) for r in update_runs(UNIT, config)] == [("site.yml", (UNITS[0][0],))]
    failed = UNIT | {"failed_hosts": UNITS[0]}
    assert [r.limit for r in update_runs(failed, UNIT | {"rollout_hosts_pending": [UNITS[0][0]]})] == [(UNITS[0][1],)]


def test_a_state_from_the_per_unit_rollout_with_a_rollout_due_is_refused_not_lost() -> None:
    legacy = UNIT | {"rollout": POLICY}
    assert HostConfigProvider().diff("dev/su_h100_000", legacy, dict(UNIT)).changes is True  # rewritten once
    assert update_runs(legacy, dict(UNIT)) == []
    with pytest.raises(RolloutMoved, match=r"su_h100_000: its hosts in service are due a drained rollout"):
        update_runs(legacy, UNIT | {"versions": {"cuda": "12.9", "bios": {}}})
    with pytest.raises(RolloutMoved, match="dev-h100-su000-n001"):
        update_runs(legacy | {"rollout_pending": [UNITS[0][1]]}, dict(UNIT))


# --- the program: one rollout per cluster ---------------------------------------------------------------------------


def test_one_rollout_per_cluster_which_every_unit_waits_for(registrations: list[Registration]) -> None:
    spec = load_site(stack_site("uk"))
    size = size_site(spec)

    @pulumi.runtime.test
    def run() -> Any:
        return Site("uk", SiteArgs(spec=spec, size=size, bmc_password=pulumi.Output.secret("s3cret"))).summary

    run()
    rollouts = {r.name: r for r in registrations if r.type == "pulumi-python:dynamic/hosts:ClusterRollout"}
    assert set(rollouts) == {f"uk-{c.name}-rollout" for c in size.clusters}
    pools = {r.name: r.urn for r in registrations if r.type == "pulumi-python:dynamic/baremetal:NodePool"}
    for c in size.clusters:
        mine = rollouts[f"uk-{c.name}-rollout"]
        # After every unit's bare-metal layer of the cluster (BIOS staged before the reboot into it).
        theirs = {p for n, p in pools.items() if n.startswith(f"uk-{c.name}-su")}
        assert len(theirs) == len(c.units)
        assert theirs <= set(mine.dependencies)
        units = [r for r in registrations if r.name.startswith(f"uk-{c.name}-su") and r.name.endswith("-hosts")]
        assert len(units) == len(c.units)
        assert all(mine.urn in r.dependencies for r in units)


def test_check_names_the_property_the_value_and_what_is_allowed() -> None:
    assert ClusterRolloutProvider().check({}, dict(IN_SERVICE)).failures == []
    # Numbers come from the engine as floats: a whole one is fine, a fraction is not.
    as_engine = IN_SERVICE | {"rollout": POLICY | {"batch_percent": 25.0, "max_fail_percentage": 0.0}}
    assert ClusterRolloutProvider().check({}, as_engine).failures == []
    half = IN_SERVICE | {"rollout": POLICY | {"batch_percent": 12.5}}
    assert [f.property for f in ClusterRolloutProvider().check({}, half).failures] == ["rollout.batch_percent"]
    bad = IN_SERVICE | {"cluster": "", "rollout": POLICY | {"batch_percent": 0, "max_fail_percentage": 101}}
    problems = {f.property: f.reason for f in ClusterRolloutProvider().check({}, bad).failures}
    assert set(problems) == {"cluster", "rollout.batch_percent", "rollout.max_fail_percentage"}
    assert problems["rollout.batch_percent"] == "is 0; allowed: a whole number from 1 to 100"


def test_the_provider_module_holds_no_clients() -> None:
    import dill

    provider = dill.loads(dill.dumps(rollout_provider.ClusterRolloutProvider(), recurse=True))
    assert vars(provider) == {}
