"""site.yml for real on four isolated Debian 12 hosts (tests/testbed.py): converge, idempotence, faults, air gap.

The hosts are the `dev` site's four nodes, made an air-gapped Debian 12 site whose package mirror is the one
the testbed builds and serves. Needs root; skipped with the reason when a testbed cannot be built here,
except under FJORD_REQUIRE_INTEGRATION=1 (CI), where that fails.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fjord.adapters.ansible import (
    AnsibleSettings,
    PlaybookResult,
    ProgressEvent,
    default_playbooks_dir,
    run_playbook,
)
from fjord.cli.main import app
from fjord.hosts import build_inventory, unit_inventory
from fjord.hosts.inventory import unit_group
from fjord.providers.playbook import HostConfigProvider, playbooks_digest
from fjord.sizing.site import size_site
from fjord.spec.load import default_site, load_site
from fjord.spec.models import Site
from tests import testbed as tb

pytestmark = [pytest.mark.slow, pytest.mark.testbed]

PLAYBOOK = "site.yml"
TESTBED_VARS = {
    # kubelet/kubeadm come only from pkgs.k8s.io, which an air-gapped Debian host cannot reach (k8s_node says so).
    "k8s_node_install_kube_packages": False,
    # The hosts share the controller's kernel (/proc/sys is read-only there): files are written, not applied.
    "fjord_apply_kernel_settings": False,
}


def _unavailable(playbook: bool = True) -> None:
    reason = tb.unavailable_reason()
    if reason is None and playbook and not (default_playbooks_dir() / PLAYBOOK).is_file():
        reason = f"no {PLAYBOOK} under {default_playbooks_dir()} yet"
    if reason is not None:
        if os.environ.get("FJORD_REQUIRE_INTEGRATION") == "1":
            pytest.fail(f"testbed required (FJORD_REQUIRE_INTEGRATION=1) but: {reason}")
        pytest.skip(f"testbed: {reason}")


def air_gapped_site(mirror_url: str) -> dict[str, Any]:
    """The dev site as an air-gapped Debian 12 site whose mirror is the testbed's."""
    raw = copy.deepcopy(default_site())
    raw["software"] |= {"os": "debian-12", "driver_source": "mirror"}
    raw["air_gap"] = {"packages": mirror_url, "registry": "registry.testbed.local", "charts": "https://charts.local"}
    return raw


class Bed:
    def __init__(self, bed: tb.Testbed, tmp: Path, state: Path) -> None:
        self.bed = bed
        self.raw = air_gapped_site(bed.mirror_url)
        self.site: Site = load_site(self.raw)
        self.vars = {h: v | TESTBED_VARS for h, v in bed.host_vars().items()}
        # A short state path, as fjord's default is: SSH control sockets live there (control_path).
        self.settings = AnsibleSettings(state_dir=state)
        self.tmp = tmp

    def run(self, **kw: Any) -> PlaybookResult:
        inventory = build_inventory(self.site, size_site(self.site), host_vars=self.vars)
        return run_playbook(PLAYBOOK, inventory.data, site=self.site.name, settings=self.settings, **kw)

    def host(self, index: int) -> tb.Host:
        return self.bed.hosts[index]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    _unavailable()
    names = [n.name for n in size_site(load_site(default_site())).hosts()]
    state = Path(tempfile.mkdtemp(prefix="fj-ansible-"))
    try:
        with tb.testbed(names) as running:
            yield Bed(running, tmp_path_factory.mktemp("testbed"), state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def test_testbed_starts_clean_over_leftovers_and_tears_down() -> None:
    """A leftover namespace and bridge (an interrupted run) do not break it; nothing is left after it."""
    _unavailable(playbook=False)
    subprocess.run(["ip", "netns", "add", f"{tb.PREFIX}leftover"], check=True)
    subprocess.run(["ip", "link", "add", tb.BRIDGE, "type", "bridge"], check=False)
    with tb.testbed(["fj3-probe"]) as bed:
        (host,) = bed.hosts
        out = bed.ssh(host, "hostname; cat /proc/1/comm; ip -4 -o addr show eth0; ip route").stdout
        assert out.splitlines()[0] == "fj3-probe"
        assert host.address in out
        assert "default" not in out  # no route out: an air-gapped host
        init = host.init_pid()
    assert not [ns for ns in tb._netns_list() if ns.startswith(tb.PREFIX)]
    assert not Path(f"/sys/class/net/{tb.BRIDGE}").exists()
    assert not tb.alive(init)
    assert not tb.STATE.exists()


def _chronyd(bed: Bed, host: tb.Host) -> list[str]:
    """The running chronyd processes as 'pid args' lines."""
    return bed.bed.ssh(host, "ps -o pid=,args= -C chronyd").stdout.strip().splitlines()


def test_site_yml_converges_for_real(bed: Bed) -> None:
    events: list[ProgressEvent] = []
    result = bed.run(on_event=events.append)
    assert not result.crashed, result.error
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    assert sorted(result.hosts) == sorted(h.name for h in bed.bed.hosts)
    assert all(r.changed > 0 for r in result.hosts.values())
    # GPU tasks skip themselves on these GPU-less hosts.
    assert all(r.skipped > 0 for r in result.hosts.values())
    probe = bed.bed.ssh(
        bed.host(1),
        "dpkg-query -W -f='${Package} ${Status}\\n' chrony containerd rdma-core; "
        "cat /etc/apt/sources.list.d/fjord-mirror.sources; ls /etc/sysctl.d/",
    ).stdout
    for pkg in ("chrony", "containerd", "rdma-core"):
        assert f"{pkg} install ok installed" in probe
    assert bed.bed.mirror_url in probe
    assert "90-fjord.conf" in probe
    # Services really run: chronyd, with -x (these hosts may not set the shared clock). It was started after
    # its settings were written, so the restart their change notified is skipped on every host.
    running = _chronyd(bed, bed.host(1))
    assert running
    assert all(" -x" in line for line in running)
    by_kind = {(e.task, e.host): e.kind for e in events if e.kind in ("ok", "changed", "skipped")}
    for host in result.hosts:
        assert by_kind[("Base | Start chrony", host)] == "changed"
        assert by_kind[("Base | Restart chrony", host)] == "skipped"
    # GPU-bound work is left alone with its reason said: the task that says why ran on every host, and no task
    # of the NVIDIA stack did anything (its include is skipped as a whole).
    for host in result.hosts:
        assert by_kind[("GPU node | Say why the NVIDIA stack is left alone", host)] == "ok"
        assert by_kind[("GPU node | Configure the NVIDIA stack", host)] == "skipped"
    nvidia = ("NVIDIA stack |", "Nvidia driver |", "Fabric manager |", "Cuda toolkit |", "Nvidia container toolkit |")
    assert not [e for e in events if e.task.startswith((*nvidia, "Dcgm |")) and e.kind in ("ok", "changed")]


def test_second_run_changes_nothing(bed: Bed) -> None:
    events: list[ProgressEvent] = []
    result = bed.run(on_event=events.append)
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    assert {h: r.changed for h, r in result.hosts.items()} == dict.fromkeys(result.hosts, 0)
    # The facts of the first run come from fjord's fact cache: no play gathers them again.
    assert not [e for e in events if e.task == "Gathering Facts"]
    # fjord_facts detects in the first play only; later plays end the role with a meta task the strategy
    # decides itself, so no worker runs, not even a skipped one, for its include there.
    detect = "Fjord facts | Detect the host's GPUs, services and kernel policy"
    for host in result.hosts:
        assert [e.kind for e in events if (e.task, e.host) == (detect, host)] == ["ok"], host
    # Each host's SSH master outlives the runs (ControlPersist under Mitogen): the next run skips the handshake.
    sockets = [p for p in (bed.settings.state_dir / "cp").iterdir() if p.is_socket()]  # type: ignore[operator]
    assert len(sockets) == len(bed.bed.hosts), sockets


def test_a_changed_chrony_setting_restarts_the_running_chronyd(bed: Bed) -> None:
    host = bed.host(2)
    before = _chronyd(bed, host)
    assert before
    # Drift: someone edited chronyd's options on a host where it runs.
    bed.bed.ssh(host, "sed -i 's/^DAEMON_OPTS=.*/DAEMON_OPTS=\"-F 1\"/' /etc/default/chrony")
    events: list[ProgressEvent] = []
    result = bed.run(limit=[host.name], on_event=events.append)
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    kinds = {e.task: e.kind for e in events if e.host == host.name and e.kind in ("ok", "changed", "skipped")}
    assert kinds["Base | Keep chronyd off the clock where the host does not own its kernel"] == "changed"
    assert kinds["Base | Start chrony"] == "ok"
    assert kinds["Base | Restart chrony"] == "changed"
    after = _chronyd(bed, host)
    assert after
    assert after != before  # a new process...
    assert all(" -x" in line for line in after)  # ...with the setting restored


def test_packages_come_from_the_local_mirror_only(bed: Bed) -> None:
    """Air gap: no route out, the distro sources are gone, installed packages come from the testbed's mirror."""
    out = bed.bed.ssh(bed.host(0), "ip route; apt-cache policy chrony; cat /etc/apt/sources.list").stdout
    assert "default" not in out
    assert bed.bed.mirror_url in out
    assert "deb.debian.org" not in out


def test_faults_are_reported_by_name_and_a_rerun_converges(bed: Bed) -> None:
    broken, down = bed.host(1), bed.host(3)
    status = broken.root() / "var/lib/dpkg/status"
    saved = status.read_bytes()
    status.write_text("Package: fj3-broken\nthis is not a dpkg database\n", encoding="utf-8")
    bed.bed.stop(down)
    try:
        stack = bed.tmp / "stacks"
        stack.mkdir(exist_ok=True)
        (stack / "Pulumi.testbed.yaml").write_text(
            yaml.safe_dump({"config": {"fjord:site": bed.raw}}), encoding="utf-8"
        )
        host_vars = bed.tmp / "host-vars.json"
        host_vars.write_text(json.dumps(bed.vars), encoding="utf-8")
        env = {"FJORD_ANSIBLE_STATE": str(bed.settings.state_dir)}
        cli = CliRunner().invoke(
            app,
            ["configure", "testbed", "--stacks-dir", str(stack), "--host-vars", str(host_vars)],
            env=env,
        )
        assert cli.exit_code == 3, cli.output
        assert f"failed: {broken.name}: " in cli.stderr
        assert f"unreachable: {down.name}: " in cli.stderr
        assert "1 failed, 1 unreachable of 4 hosts" in cli.stderr
        for ok in (bed.host(0), bed.host(2)):
            assert f"{ok.name}: " not in cli.stderr  # the others finished
    finally:
        status.write_bytes(saved)
        bed.bed.start(down)
    result = bed.run()
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    assert result.hosts[down.name].unreachable == 0
    assert result.hosts[broken.name].failed == 0


def test_host_config_resource_records_failures_and_reruns_them(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    """HostConfig's create/update/diff called directly (the mocks never call them) on the converged unit."""
    monkeypatch.setenv("FJORD_ANSIBLE_STATE", str(bed.settings.state_dir))
    unit = size_site(bed.site).clusters[0].units[0]
    inventory = unit_inventory(bed.site, unit, host_vars=bed.vars)
    props: dict[str, Any] = {
        "site": bed.site.name,
        "group": unit_group(unit),
        "playbook": PLAYBOOK,
        "inventory": inventory.to_json(),
        "inventory_digest": inventory.digest,
        "versions": {"driver_branch": bed.site.software.driver_branch},
        "playbooks_digest": playbooks_digest(),
        "hosts": [n.name for n in unit.nodes()],  # as HostConfig sends them: the hosts in service
    }
    provider = HostConfigProvider()
    created = provider.create(dict(props))
    rid, outs = str(created.id), dict(created.outs or {})
    assert (outs["failed_hosts"], outs["unreachable_hosts"]) == ([], [])
    assert (outs["hosts_run"], outs["changed"]) == (4, 0)
    assert outs["inventory"] == props["inventory"]  # refresh (read) runs the check-mode play against it
    assert provider.diff(rid, outs, props).changes is False
    # Pulumi calls update only for a diff: a configuration change (one more host variable, same versions) reruns
    # site.yml on the unit's hosts, one of which is down.
    edited = {h: dict(v) for h, v in bed.vars.items()}
    edited[bed.host(0).name]["fjord_testbed_note"] = "edited"
    changed_inventory = unit_inventory(bed.site, unit, host_vars=edited)
    changed = props | {"inventory": changed_inventory.to_json(), "inventory_digest": changed_inventory.digest}
    assert provider.diff(rid, outs, changed).changes is True
    down = bed.host(2)
    bed.bed.stop(down)
    try:
        updated = dict(provider.update(rid, outs, dict(changed)).outs or {})
        assert updated["unreachable_hosts"] == [down.name]
        assert provider.diff(rid, updated, changed).changes is True  # the next `pulumi up` reruns
    finally:
        bed.bed.start(down)
    retried = dict(provider.update(rid, updated, dict(changed)).outs or {})
    assert retried["hosts_run"] == 1  # only the host left behind
    assert (retried["failed_hosts"], retried["unreachable_hosts"]) == ([], [])
    assert provider.diff(rid, retried, changed).changes is False


def test_a_version_bump_rolls_hosts_in_service_batch_by_batch(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    """A software version bump reaches hosts in service only through the cluster's drained rollout: the
    ClusterRollout's update runs upgrade-gpu-stack.yml (never site.yml) one batch of the cluster's batch_percent
    after the other (here one host of four), each taken out of service, changed, validated and returned before
    the next batch starts. (The inventory keeps the versions the testbed's mirror serves; the bump is what makes
    the update roll.)"""
    from fjord.adapters import ansible
    from fjord.hosts.inventory import cluster_inventory
    from fjord.providers.rollout import ClusterRolloutProvider

    monkeypatch.setenv("FJORD_ANSIBLE_STATE", str(bed.settings.state_dir))
    converged = bed.run()  # hosts in service have been through site.yml (their apt sources, their packages)
    assert converged.ok, {h: r.failures for h, r in converged.hosts.items()}
    cluster = size_site(bed.site).clusters[0]
    hosts = [n.name for u in cluster.units for n in u.nodes()]
    runs: list[tuple[str, tuple[str, ...], list[ProgressEvent]]] = []
    real = ansible.run_playbook

    def recorded(playbook: str, inventory: Any, **kw: Any) -> PlaybookResult:
        events: list[ProgressEvent] = []
        runs.append((playbook, tuple(kw["limit"]), events))
        return real(playbook, inventory, on_event=events.append, **kw)

    monkeypatch.setattr(ansible, "run_playbook", recorded)
    inventory = cluster_inventory(bed.site, cluster, host_vars=bed.vars)
    rollout = {"playbook": "upgrade-gpu-stack.yml", "batch_percent": 25, "max_fail_percentage": 0}
    olds: dict[str, Any] = {
        "site": bed.site.name,
        "cluster": cluster.name,
        "inventory": inventory.to_json(),
        "hosts": hosts,
        "versions": {"cuda": "12.8", "bios": {}},
        "playbooks_digest": "a" * 64,
        "rollout": rollout,
    }
    outs = dict(
        ClusterRolloutProvider().update("x", olds, olds | {"versions": {"cuda": "12.9", "bios": {}}}).outs or {}
    )
    assert (outs["failed_hosts"], outs["unreachable_hosts"], outs["rollout_pending"]) == ([], [], [])
    assert outs["batches"] == [[h] for h in hosts]
    # One run per batch, in the cluster's order, each of the rollout playbook on its batch alone.
    assert [(p, limit) for p, limit, _ in runs] == [("upgrade-gpu-stack.yml", (h,)) for h in hosts]
    for _, (host,), events in runs:
        assert {e.host for e in events if e.host} == {host}
        # Taken out of service (here: said why it could not be cordoned) before it was changed.
        said = [e for e in events if e.task == "Upgrade | Say why the node is not cordoned" and e.kind == "ok"]
        assert len(said) == 1


def test_host_config_read_finds_a_file_changed_on_a_host(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refresh: HostConfig.read runs site.yml in check mode on the converged unit; a host where a managed file
    was edited behind fjord's back is listed as drifted (the read changes nothing), and the next update reruns
    the playbook on that host only."""
    monkeypatch.setenv("FJORD_ANSIBLE_STATE", str(bed.settings.state_dir))
    unit = size_site(bed.site).clusters[0].units[0]
    inventory = unit_inventory(bed.site, unit, host_vars=bed.vars)
    props: dict[str, Any] = {
        "site": bed.site.name,
        "group": unit_group(unit),
        "playbook": PLAYBOOK,
        "inventory": inventory.to_json(),
        "inventory_digest": inventory.digest,
        "hosts": [n.name for n in unit.nodes()],
        "versions": {"driver_branch": bed.site.software.driver_branch},
        "playbooks_digest": playbooks_digest(),
    }
    provider = HostConfigProvider()
    outs = dict(provider.create(dict(props)).outs or {})
    assert dict(provider.read("x", dict(outs)).outs or {})["drifted_hosts"] == []
    host = bed.host(1)
    bed.bed.ssh(host, "sed -i 's/^DAEMON_OPTS=.*/DAEMON_OPTS=\"-F 1\"/' /etc/default/chrony")
    drifted = dict(provider.read("x", dict(outs)).outs or {})
    assert drifted["drifted_hosts"] == [host.name]
    assert "-F 1" in bed.bed.ssh(host, "cat /etc/default/chrony").stdout  # the read changed nothing
    assert provider.diff("x", drifted, props).changes is True
    repaired = dict(provider.update("x", drifted, dict(props)).outs or {})
    assert repaired["hosts_run"] == 1
    assert " -x" in bed.bed.ssh(host, "grep ^DAEMON_OPTS /etc/default/chrony").stdout  # the role's setting is back
    assert dict(provider.read("x", repaired).outs or {})["drifted_hosts"] == []
