"""HostConfig: one per scalable unit under the mocks, and its diff logic called directly (mocks never call it).

Its create/update run for real against the testbed in tests/test_hosts_testbed.py.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from fjord.components.site import Site, SiteArgs
from fjord.hosts import unit_inventory
from fjord.plan.mocks import Registration
from fjord.providers.playbook import HostConfigProvider, playbooks_digest, update_runs
from fjord.sizing.site import size_site
from fjord.spec.load import load_site

from .conftest import stack_site

OLD: dict[str, Any] = {
    "site": "dev",
    "group": "su_h100_000",
    "playbook": "site.yml",
    "inventory_digest": "a" * 64,
    "versions": {"driver_branch": 570, "cuda": "12.8"},
    "playbooks_digest": "b" * 64,
    "failed_hosts": [],
    "unreachable_hosts": [],
}


def test_no_change_no_run() -> None:
    new = {k: v for k, v in OLD.items() if not k.endswith("_hosts")} | {"inventory": "{}"}
    assert HostConfigProvider().diff("dev/su_h100_000", OLD, new).changes is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("inventory_digest", "c" * 64),
        ("versions", {"driver_branch": 575, "cuda": "12.8"}),
        ("playbooks_digest", "d" * 64),
        ("playbook", "gpu-node.yml"),
    ],
)
def test_input_change_reruns(field: str, value: Any) -> None:
    diff = HostConfigProvider().diff("dev/su_h100_000", OLD, OLD | {field: value})
    assert diff.changes is True
    assert not diff.replaces  # an update (rerun), never a replacement


@pytest.mark.parametrize("recorded", ["failed_hosts", "unreachable_hosts"])
def test_recorded_host_failure_reruns(recorded: str) -> None:
    olds = OLD | {recorded: ["dev-h100-su000-n002"]}
    assert HostConfigProvider().diff("dev/su_h100_000", olds, dict(OLD)).changes is True


def test_playbooks_digest_follows_the_roles(tmp_path: Any) -> None:
    (tmp_path / "site.yml").write_text("---\n", encoding="utf-8")
    first = playbooks_digest(tmp_path)
    (tmp_path / "roles").mkdir()
    (tmp_path / "roles" / "x.yml").write_text("---\n", encoding="utf-8")
    assert playbooks_digest(tmp_path) != first


def test_one_host_config_per_scalable_unit(registrations: list[Registration]) -> None:
    spec = load_site(stack_site("uk"))
    size = size_site(spec)

    @pulumi.runtime.test
    def run() -> Any:
        return Site("uk", SiteArgs(spec=spec, size=size)).summary

    run()
    hosts = [r for r in registrations if r.type == "pulumi-python:dynamic/hosts:HostConfig"]
    units = [u for c in size.clusters for u in c.units]
    assert len(hosts) == len(units) == 20
    assert {r.name for r in hosts} == {f"uk-{u.cluster}-su{u.index:03d}-hosts" for u in units}
    cluster_urns = {r.name: r.urn for r in registrations if r.type == "fjord:components:GpuCluster"}
    assert all(r.parent == cluster_urns[f"uk-{r.name.split('-')[1]}"] for r in hosts)
    # The inventory each unit's resource carries is exactly the unit's, and its digest matches.
    inv = unit_inventory(spec, units[0])
    assert len(inv.hosts) == units[0].node_count
    assert json.loads(inv.to_json())["all"]["children"]["su_h200_000"]["hosts"].keys() == set(inv.hosts)


def test_hosts_can_be_left_alone(registrations: list[Registration]) -> None:
    spec = load_site(stack_site("uk"))

    @pulumi.runtime.test
    def run() -> Any:
        return Site("uk", SiteArgs(spec=spec, size=size_site(spec), configure_hosts=False)).summary

    run()
    assert not [r for r in registrations if r.type == "pulumi-python:dynamic/hosts:HostConfig"]


# --- what an update runs: site.yml for new hosts and configuration; hosts in service get version and role changes
# only from their cluster's drained rollout (tests/test_rollout.py) -------------------------------------------------

HOSTS = [f"dev-h100-su000-n{i:03d}" for i in range(4)]
IN_SERVICE: dict[str, Any] = OLD | {"hosts": HOSTS, "versions": {"cuda": "12.8", "bios": {}}}


def test_a_version_bump_never_runs_site_yml_on_hosts_in_service() -> None:
    news = IN_SERVICE | {"versions": {"cuda": "12.9", "bios": {}}, "inventory_digest": "c" * 64}
    assert update_runs(IN_SERVICE, news) == []
    grown = news | {"hosts": [*HOSTS, "dev-h100-su000-n004"], "playbooks_digest": "d" * 64}
    (site,) = update_runs(IN_SERVICE, grown)
    assert (site.playbook, site.limit) == ("site.yml", ("dev-h100-su000-n004",))


def test_configuration_only_changes_rerun_site_yml_and_failures_retry_where_they_were() -> None:
    news = IN_SERVICE | {"inventory_digest": "c" * 64}  # same versions and roles: configuration only
    (run,) = update_runs(IN_SERVICE, news)
    assert (run.playbook, run.limit) == ("site.yml", tuple(HOSTS))
    failed = IN_SERVICE | {"failed_hosts": [HOSTS[1]]}
    (retry,) = update_runs(failed, IN_SERVICE)
    assert (retry.playbook, retry.limit) == ("site.yml", (HOSTS[1],))
    assert update_runs(IN_SERVICE, dict(IN_SERVICE)) == []


def test_a_state_without_recorded_hosts_counts_every_host_in_service() -> None:
    before = {k: v for k, v in IN_SERVICE.items() if k != "hosts"}
    news = IN_SERVICE | {"versions": {"cuda": "12.9", "bios": {}}}
    assert update_runs(before, news) == []
