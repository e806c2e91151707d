"""A real Slurm cluster on the four testbed hosts (tests/testbed.py), from Debian's Slurm packages in the mirror.

The dev site's H100 cluster made a Slurm cluster: n000 the primary controller and the accounting host (MariaDB,
slurmdbd), n001 the backup controller, slurmd on all four. The hosts have no GPU, so they declare none; their
init is no systemd, so the role picks the non-cgroup plugins. Needs root; skipped with the reason when a testbed
cannot be built here, except under FJORD_REQUIRE_INTEGRATION=1.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fjord.adapters.ansible import AnsibleSettings, PlaybookResult, ProgressEvent, run_playbook
from fjord.hosts import build_inventory
from fjord.hosts.inventory import upgrade_vars
from fjord.hosts.nvlink import IMEX_OPTIONS
from fjord.hosts.slurm import slurm_clusters
from fjord.sizing.site import size_site
from fjord.spec.load import load_site
from fjord.spec.models import Site
from tests import testbed as tb
from tests.conftest import emulated_bmcs
from tests.redfish_lab import PASSWORD as BMC_PASSWORD
from tests.redfish_lab import USERNAME, Emulator, fake_system
from tests.test_hosts_testbed import TESTBED_VARS, _unavailable, air_gapped_site

pytestmark = [pytest.mark.slow, pytest.mark.testbed]

HOSTS = [f"dev-h100-su000-n{i:03d}" for i in range(4)]
PRIMARY, BACKUP = HOSTS[0], HOSTS[1]


def slurm_site(mirror_url: str) -> dict[str, Any]:
    raw = air_gapped_site(mirror_url)
    cluster = raw["clusters"][0]
    cluster["scheduler"] = "slurm"
    cluster["slurm"] = {"controllers": [PRIMARY, BACKUP], "accounting_host": PRIMARY, "health_check_interval_s": 60}
    # The owner may use the whole cluster (4 nodes); guests hold a quota of 16 H100s: 2 whole nodes.
    raw["tenants"] = [
        {"name": "platform", "object_quota_tb": 10, "buckets": ["datasets"]},
        {"name": "guests", "gpu_quotas": [{"cluster": "h100", "gpus": 16}]},
    ]
    return raw


class SlurmBed:
    def __init__(self, bed: tb.Testbed, state: Path) -> None:
        self.bed = bed
        self.raw = slurm_site(bed.mirror_url)
        self.site: Site = load_site(self.raw)
        # Lab names are not in any DNS: the role writes them into /etc/hosts.
        self.vars = {h: v | TESTBED_VARS | {"slurm_hosts_file": True} for h, v in bed.host_vars().items()}
        self.settings = AnsibleSettings(state_dir=state)

    def run(self, playbook: str = "site.yml", **kw: Any) -> PlaybookResult:
        inventory = build_inventory(self.site, size_site(self.site), host_vars=self.vars)
        return run_playbook(playbook, inventory.data, site=self.site.name, settings=self.settings, **kw)

    def host(self, name: str) -> tb.Host:
        return next(h for h in self.bed.hosts if h.name == name)

    def sh(self, command: str, host: str = PRIMARY, check: bool = True) -> str:
        return self.bed.ssh(self.host(host), command, check=check).stdout

    def states(self) -> dict[str, str]:
        out = self.sh("sinfo --noheader --Node --format '%N %T'")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def wait_states(self, want: str, timeout_s: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        states = self.states()
        while any(s != want for s in states.values()) and time.monotonic() < deadline:
            time.sleep(1)
            states = self.states()
        return states


@pytest.fixture(scope="module")
def sbed() -> Iterator[SlurmBed]:
    _unavailable()
    state = Path(tempfile.mkdtemp(prefix="fj-slurm-"))
    try:
        with tb.testbed(HOSTS) as running:
            yield SlurmBed(running, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _kinds(events: list[ProgressEvent], task: str) -> dict[str, str]:
    return {e.host: e.kind for e in events if e.task == task and e.kind in ("ok", "changed", "skipped")}


def test_site_yml_builds_a_slurm_cluster(sbed: SlurmBed) -> None:
    events: list[ProgressEvent] = []
    result = sbed.run(on_event=events.append)
    assert not result.crashed, result.error
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    # Every node is idle in the cluster's partition.
    states = sbed.wait_states("idle")
    assert states == dict.fromkeys(HOSTS, "idle")
    assert sbed.sh("sinfo --noheader --format '%P %D'").split() == ["h100*", "4"]
    # The daemons where the spec puts them.
    for host, daemons in (
        (PRIMARY, {"slurmctld", "slurmdbd", "slurmd", "munged", "mariadbd"}),
        (BACKUP, {"slurmctld", "slurmd"}),
    ):
        running = set(sbed.sh("ps -eo comm=", host).split())
        assert daemons <= running, (host, daemons - running)
    assert "slurmctld" not in sbed.sh("ps -eo comm=", HOSTS[2]).split()
    # The backup controller answers as such.
    ping = sbed.sh("scontrol ping")
    assert re.search(rf"Slurmctld\(primary\) at {PRIMARY} is UP", ping), ping
    assert re.search(rf"Slurmctld\(backup\) at {BACKUP} is UP", ping), ping
    # The configuration is fjord's generated one, with the host's run-time choices.
    conf = sbed.sh("cat /etc/slurm/slurm.conf", HOSTS[3])
    (cluster,) = slurm_clusters(sbed.site, size_site(sbed.site))
    for line in [s.line() for s in cluster.node_sets]:
        assert line in conf
    assert "ProctrackType=proctrack/linuxproc" in conf  # no systemd, no cgroup tree of its own
    assert "Gres=" not in conf.split("NodeName=DEFAULT", 1)[1].splitlines()[0]  # no GPU on these hosts
    assert "declares no GPU" in sbed.sh("cat /etc/slurm/gres.conf", HOSTS[3])
    topology = sbed.sh("cat /etc/slurm/topology.conf")
    assert all(line in topology for line in cluster.topology)
    # The tenants' accounts and QOS.
    qos = dict(line.split("|") for line in sbed.sh("sacctmgr -n -P show qos format=name,grptres").splitlines())
    assert sorted(qos["guests"].split(",")) == ["gres/gpu=16", "node=2"]
    assert sorted(qos["platform"].split(",")) == ["gres/gpu=32", "node=4"]
    # Pyxis/enroot are not in Debian: said, not failed.
    said = [e for e in events if e.task == "Slurm | Say why containers are not set up" and e.kind == "ok"]
    assert said


def test_jobs_run_are_accounted_and_limited_by_qos(sbed: SlurmBed) -> None:
    sbed.sh("sacctmgr -i add user root account=platform,guests")
    ran = sbed.sh("srun --account=platform --nodes=3 --time=1 hostname").split()
    assert len(ran) == 3
    assert set(ran) <= set(HOSTS)
    assert len(set(ran)) == 3
    # sacct records it (the controller sends the job's end to slurmdbd a moment later).
    deadline = time.monotonic() + 30
    records: list[list[str]] = []
    while time.monotonic() < deadline:
        out = sbed.sh("sacct --noheader --parsable2 --allocations --accounts=platform --format=JobName,State,NNodes")
        records = [line.split("|") for line in out.splitlines() if line.strip()]
        if ["hostname", "COMPLETED", "3"] in records:
            break
        time.sleep(1)
    assert ["hostname", "COMPLETED", "3"] in records
    # The guests' QOS allows 2 nodes: a 3-node job waits on the QOS's node limit; 2 nodes run.
    job = sbed.sh("sbatch --parsable --account=guests --qos=guests --nodes=3 --time=1 --wrap hostname").strip()
    try:
        reason = ""
        for _ in range(30):
            reason = sbed.sh(f"squeue --noheader --jobs {job} --format '%T %r'").strip()
            if "QOSGrpNode" in reason:
                break
            time.sleep(1)
        assert reason.startswith("PENDING QOSGrpNode"), reason
    finally:
        sbed.sh(f"scancel {job}")
    assert len(sbed.sh("srun --account=guests --qos=guests --nodes=2 --time=1 hostname").split()) == 2


def test_second_run_changes_nothing(sbed: SlurmBed) -> None:
    result = sbed.run()
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    assert {h: r.changed for h, r in result.hosts.items()} == dict.fromkeys(HOSTS, 0)


def test_munge_key_is_shared_and_never_logged(sbed: SlurmBed) -> None:
    keys = {h: sbed.sh("base64 -w0 /etc/munge/munge.key", h) for h in HOSTS}
    assert len(set(keys.values())) == 1
    key = next(iter(keys.values()))
    assert len(base64.b64decode(key)) >= 32
    # Nowhere in what the runs left: events, artifacts, fact cache.
    for path in sbed.settings.state_dir.rglob("*"):  # type: ignore[union-attr]
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    events: list[ProgressEvent] = []
    sbed.run(on_event=events.append)
    assert all(key not in json.dumps(dataclasses.asdict(e)) for e in events)


def test_a_killed_slurmd_is_reported_and_healed_by_a_rerun(sbed: SlurmBed) -> None:
    victim = HOSTS[3]
    sbed.sh("kill $(pidof slurmd)", victim)
    for _ in range(20):
        if "slurmd" not in sbed.sh("ps -eo comm=", victim).split():
            break
        time.sleep(0.5)
    events: list[ProgressEvent] = []
    result = sbed.run(on_event=events.append)
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    started = _kinds(events, "Slurm | Start slurmd")
    assert started[victim] == "changed"
    assert all(kind == "ok" for host, kind in started.items() if host != victim)
    reported = [e for e in events if e.task == "Slurm | Report a slurmd that was not running" and e.kind == "ok"]
    assert [e.host for e in reported] == [victim]
    assert {h: r.changed for h, r in result.hosts.items() if h != victim} == dict.fromkeys(HOSTS[:3], 0)
    assert sbed.wait_states("idle")[victim] == "idle"
    assert "slurmd" in sbed.sh("ps -eo comm=", victim).split()


def test_upgrade_drains_validates_and_resumes_only_its_own_drains(sbed: SlurmBed) -> None:
    ops = HOSTS[2]
    sbed.sh(f"scontrol update NodeName={ops} State=DRAIN Reason='disk replacement (ops)'")
    policy = upgrade_vars(sbed.site, ["h100"]) | {"fjord_upgrade_batch_percent": 50}
    events: list[ProgressEvent] = []
    result = sbed.run("upgrade-gpu-stack.yml", extra_vars=policy, on_event=events.append)
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    drained = _kinds(events, "Slurm | Drain the node")
    resumed = _kinds(events, "Slurm | Resume the node fjord drained")
    others = [h for h in HOSTS if h != ops]
    assert {h: drained[h] for h in others} == dict.fromkeys(others, "changed")
    assert drained[ops] == "skipped"  # already drained, by someone else
    assert {h: resumed[h] for h in others} == dict.fromkeys(others, "changed")
    assert resumed[ops] == "skipped"
    stays = [e.host for e in events if e.task == "Slurm | Say why a drained node stays drained" and e.kind == "ok"]
    assert stays == [ops]
    # Two batches of two (serial 50 %): the first batch was back before the second was drained.
    order = [(e.host, e.task) for e in events if e.kind == "changed" and e.task.startswith("Slurm | ")]
    first = order.index((others[0], "Slurm | Resume the node fjord drained"))
    assert (others[2], "Slurm | Drain the node") in order[first:]
    # Slurm's own record: each node was drained with fjord's reason, and is back in service; the ops drain stays.
    events_out = sbed.sh("sacctmgr --noheader --parsable2 list event format=NodeName,Reason")
    assert all(f"{h}|fjord: upgrade-gpu-stack" in events_out for h in others), events_out
    states = sbed.states()
    assert {h: states[h] for h in others} == dict.fromkeys(others, "idle")
    assert states[ops] == "drained"
    reason = sbed.sh(f"sinfo --noheader --Node --nodes {ops} --format '%E'").strip()
    assert reason == "disk replacement (ops)"
    sbed.sh(f"scontrol update NodeName={ops} State=RESUME")


def test_imex_files_of_an_nvl72_rack_are_written_and_the_service_left_to_gpu_hosts(sbed: SlurmBed) -> None:
    """The testbed's cluster is HGX; here its four hosts play one NVL72 rack's trays (imex_* as host variables)."""
    addresses = [sbed.host(h).address for h in HOSTS]
    imex = {"imex_enabled": True, "imex_nodes": addresses}
    saved = sbed.vars
    sbed.vars = {h: v | imex for h, v in saved.items()}
    try:
        events: list[ProgressEvent] = []
        result = sbed.run(on_event=events.append)
    finally:
        sbed.vars = saved
    assert result.ok, {h: r.failures for h, r in result.hosts.items()}
    for host in HOSTS:
        nodes = sbed.sh("cat /etc/nvidia-imex/nodes_config.cfg", host)
        assert nodes.splitlines() == addresses
        config = sbed.sh("grep -v '^#' /etc/nvidia-imex/config.cfg", host)
        assert dict(line.split("=", 1) for line in config.splitlines()) == IMEX_OPTIONS
    said = _kinds(events, "Imex | Say why the IMEX service is not installed here")
    assert said == dict.fromkeys(HOSTS, "ok")
    assert _kinds(events, "Imex | Install and start the IMEX service") == dict.fromkeys(HOSTS, "skipped")


def test_the_rollout_is_per_cluster_and_stops_it_whole(
    sbed: SlurmBed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cluster's four hosts as two scalable units of two (two unit groups in its inventory), its upgrade
    policy batch_percent 25, max_fail_percentage 0; unit 0's second node fails its validation after the upgrade.
    The ClusterRollout's update, for real with the Slurm drain: one node of the cluster at a time in the
    cluster's order, across the units; the failed node stays drained with fjord's reason; the rest of the
    cluster, the whole of unit 1, is never drained. Once mended, the next update rolls exactly what was left."""
    from fjord.providers.rollout import ClusterRolloutProvider

    monkeypatch.setenv("FJORD_ANSIBLE_STATE", str(sbed.settings.state_dir))
    units = [HOSTS[:2], HOSTS[2:]]
    bad = HOSTS[1]

    def inventory(broken: bool) -> str:
        extra: dict[str, Any] = {"gpu_validate_without_gpu": True, "gpu_validate_required": ["os_release"]}
        extra["gpu_validate_report_dir"] = str(tmp_path)  # the report, out of the working tree
        extra["gpu_validate_os"] = "ubuntu-22.04"  # these hosts run Debian 12: the check fails
        host_vars = sbed.vars | ({bad: sbed.vars[bad] | extra} if broken else {})
        doc = build_inventory(sbed.site, size_site(sbed.site), host_vars=host_vars).data
        children = doc["all"]["children"]
        one = children.pop("su_h100_000")
        for i, names in enumerate(units):
            children[f"su_h100_{i:03d}"] = {
                "vars": {"fjord_scalable_unit": i},
                "hosts": {h: one["hosts"][h] for h in names},
            }
        children["cluster_h100"]["children"] = {"su_h100_000": None, "su_h100_001": None}
        return json.dumps(doc)

    props: dict[str, Any] = {
        "site": sbed.site.name,
        "cluster": "h100",
        "inventory": inventory(broken=True),
        "hosts": HOSTS,
        "versions": {"cuda": "12.8", "bios": {}},
        "playbooks_digest": "a" * 64,
        "rollout": {"playbook": "upgrade-gpu-stack.yml", "batch_percent": 25, "max_fail_percentage": 0},
    }
    provider = ClusterRolloutProvider()
    created = dict(provider.create(dict(props)).outs or {})
    assert sbed.wait_states("idle") == dict.fromkeys(HOSTS, "idle")
    since = sbed.sh("date -u +%Y-%m-%dT%H:%M:%S").strip()
    bump = props | {"versions": {"cuda": "12.9", "bios": {}}}
    outs = dict(provider.update("dev/h100", created, dict(bump)).outs or {})
    # Batches of one node of the cluster, in its order: unit 0's first node, then its second, which failed.
    assert outs["batches"] == [[HOSTS[0]], [bad]]
    assert outs["failed_hosts"] == [bad]
    assert outs["rollout_pending"] == [bad, *units[1]]
    assert "batch 2 of 4: 1 of 1 nodes failed" in outs["stopped"]
    report = json.loads((tmp_path / f"{bad}.json").read_text(encoding="utf-8"))
    assert [c["status"] for c in report["checks"] if c["check"] == "os_release"] == ["failed"]

    def fjord_drains() -> list[str]:
        out = sbed.sh(f"sacctmgr --noheader --parsable2 list event start={since} format=NodeName,Reason")
        return [line.split("|")[0] for line in out.splitlines() if line.endswith("|fjord: upgrade-gpu-stack")]

    # Slurm's own record: unit 0's nodes were drained by fjord, the failed one stays drained; unit 1 was never
    # drained (slurmctld sends events in order: the failed node's is there, so an earlier one would be too).
    deadline = time.monotonic() + 30
    while bad not in fjord_drains() and time.monotonic() < deadline:
        time.sleep(1)
    drained = fjord_drains()
    assert set(drained) == {HOSTS[0], bad}, drained
    states = sbed.states()
    assert {h: states[h] for h in (HOSTS[0], *units[1])} == dict.fromkeys((HOSTS[0], *units[1]), "idle")
    assert states[bad] == "drained"
    assert sbed.sh(f"sinfo --noheader --Node --nodes {bad} --format '%E'").strip() == "fjord: upgrade-gpu-stack"

    # Mended: the next update rolls the failed node and the nodes never reached, in order, and returns them all.
    mended = bump | {"inventory": inventory(broken=False)}
    assert provider.diff("dev/h100", outs, mended).changes is True
    final = dict(provider.update("dev/h100", outs, dict(mended)).outs or {})
    assert final["batches"] == [[bad], [HOSTS[2]], [HOSTS[3]]]
    assert (final["failed_hosts"], final["rollout_pending"], final["stopped"]) == ([], [], "")
    assert sbed.wait_states("idle") == dict.fromkeys(HOSTS, "idle")
    assert provider.diff("dev/h100", final, mended).changes is False


@pytest.fixture
def slurm_bmcs() -> Iterator[Emulator]:
    """A sushy-emulator serving one system per testbed host, under the host's name, powered on."""
    yield from emulated_bmcs([fake_system(h, i, power="On") for i, h in enumerate(HOSTS)])


def test_a_declared_power_off_drains_first(
    sbed: SlurmBed, slurm_bmcs: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bmc.power: off` on the Slurm cluster, whose BMCs are sushy-emulator systems named as its hosts: the
    ClusterRollout drains each batch (batch_percent 25: one node at a time; Slurm reason `fjord: power-off`,
    waiting for the node's jobs to end) and powers off exactly the nodes that drained. A node whose job outlasts
    its drain timeout is never powered off, its job keeps running, and the rollout stops: the node after it is
    neither drained nor powered off. Power back on: the nodes are powered on (the NodePool's part, done here
    through the BMC), and the rollout waits for them, validates them and returns them to service."""
    from fjord.adapters import redfish as rf
    from fjord.providers.rollout import ClusterRolloutProvider

    monkeypatch.setenv("FJORD_ANSIBLE_STATE", str(sbed.settings.state_dir))
    emulator = slurm_bmcs
    busy = HOSTS[2]
    host_vars = sbed.vars | {busy: sbed.vars[busy] | {"slurm_drain_timeout_s": 10}}
    bmc = {
        "nodes": dict.fromkeys(HOSTS, emulator.url),
        "system_ids": {h: h for h in HOSTS},
        "username": USERNAME,
        "verify_tls": False,
        "timeout_s": 5,
        "retries": 1,
        "backoff_s": 0.05,
        "deadline_s": 120,
        "concurrency": 8,
        "power_timeout_s": 30,
    }
    props: dict[str, Any] = {
        "site": sbed.site.name,
        "cluster": "h100",
        "inventory": json.dumps(build_inventory(sbed.site, size_site(sbed.site), host_vars=host_vars).data),
        "hosts": HOSTS,
        "versions": {"cuda": "12.8", "bios": {}},
        "playbooks_digest": "a" * 64,
        "rollout": {"playbook": "upgrade-gpu-stack.yml", "batch_percent": 25, "max_fail_percentage": 0},
        "power": "on",
        "bmc": bmc,
        "bmc_password": BMC_PASSWORD,
    }
    provider = ClusterRolloutProvider()
    job = ""
    try:
        assert sbed.wait_states("idle") == dict.fromkeys(HOSTS, "idle")
        created = dict(provider.create(dict(props)).outs or {})
        job = sbed.sh(f"sbatch --parsable --account=platform --nodelist={busy} --time=5 --wrap 'sleep 240'").strip()
        for _ in range(30):
            if sbed.sh(f"squeue --noheader --jobs {job} --format %T").strip() == "RUNNING":
                break
            time.sleep(1)
        outs = dict(provider.update("dev/h100", created, props | {"power": "off"}).outs or {})
        assert outs["batches"] == [[HOSTS[0]], [HOSTS[1]], [busy]]
        assert (outs["failed_hosts"], outs["rollout_pending"]) == ([busy], [busy, HOSTS[3]])
        assert outs["powered_off"] == HOSTS[:2]
        assert [emulator.system(h)["PowerState"] for h in HOSTS] == ["Off", "Off", "On", "On"]
        states = sbed.states()
        assert [states[h] for h in HOSTS[:2]] == ["drained", "drained"]
        assert states[busy] == "draining"  # out of new work, its job still running, never powered off
        assert states[HOSTS[3]] == "idle"  # never reached
        for h in (*HOSTS[:2], busy):
            assert sbed.sh(f"sinfo --noheader --Node --nodes {h} --format '%E'").strip() == "fjord: power-off"
        assert sbed.sh(f"squeue --noheader --jobs {job} --format %T").strip() == "RUNNING"
        sbed.sh(f"scancel {job}")
        job = ""
        # Back on: powered on first (an off node runs nothing), then waited for, validated and returned.
        with rf.RedfishNode.open(rf.Target(HOSTS[0], emulator.url, HOSTS[0]), *_bmc_access(bmc)) as node:
            node.set_power("on")
        with rf.RedfishNode.open(rf.Target(HOSTS[1], emulator.url, HOSTS[1]), *_bmc_access(bmc)) as node:
            node.set_power("on")
        back = dict(provider.update("dev/h100", outs, dict(props)).outs or {})
        assert back["batches"] == [[h] for h in HOSTS]
        assert (back["failed_hosts"], back["rollout_pending"], back["powered_off"]) == ([], [], [])
        assert sbed.wait_states("idle") == dict.fromkeys(HOSTS, "idle")
    finally:
        if job:
            sbed.sh(f"scancel {job}", check=False)
        for h in HOSTS:
            sbed.sh(f"scontrol update NodeName={h} State=RESUME", check=False)


def _bmc_access(bmc: dict[str, Any]) -> tuple[Any, Any]:
    from fjord.adapters import redfish as rf

    return rf.Credentials(bmc["username"], BMC_PASSWORD), rf.Options(retries=1, backoff_s=0.05, timeout_s=5)
