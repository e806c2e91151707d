"""fjord through the real Pulumi engine with the hosts configured too: sushy-emulator BMCs and the testbed's four
Debian 12 hosts (tests/testbed.py), one testbed for the module.

The stack is the dev site made Slurm-only and air-gapped on the testbed's mirror. `fjord:hostVars` tells the
program how to reach each host (the testbed's addresses and key), `fjord:hostTags: [base]` keeps the playbook to
the base role (packages, time, kernel settings and limits: what every host gets; the GPU roles skip themselves
on these hosts anyway, and the Slurm roles would need a whole cluster). The whole cycle keeps its state in the
site's own Ceph RGW (tests/ceph_cluster.py); the fault test, on a file:// backend. Each step's JSON report, the
state and the hosts' own files are checked.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fjord.adapters.s3 import ObjectStore, S3Credentials
from fjord.providers.playbook import PACKED, unpack_inventory
from fjord.sizing.site import size_site
from fjord.spec.load import default_site, load_site
from tests import testbed as tb

from .ceph_cluster import CephCluster
from .conftest import DEV_NODES
from .engine_env import Project, make_project
from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import Emulator
from .test_engine import POOL, changes, known, pool_records, power_off_out_of_band, slurm_site, wait_on
from .test_hosts_testbed import TESTBED_VARS, _unavailable

pytestmark = [
    pytest.mark.engine,
    pytest.mark.bmc,
    pytest.mark.rgw,
    pytest.mark.slow,
    pytest.mark.testbed,
    pytest.mark.usefixtures("engine"),
]
HOSTS = "pulumi-python:dynamic/hosts:HostConfig"
UNIT_HOSTS = "dev-h100-su000-hosts"
CHRONY = "etc/default/chrony"


@pytest.fixture(scope="module")
def bed(engine: Path) -> Iterator[tb.Testbed]:
    _unavailable()
    names = [n.name for n in size_site(load_site(default_site())).hosts()]
    assert names == DEV_NODES
    with tb.testbed(names) as running:
        yield running


@pytest.fixture
def ansible_state() -> Iterator[str]:
    """A short private folder for Ansible's fact cache and SSH control sockets (their paths have a length limit)."""
    state = tempfile.mkdtemp(prefix="fj-eh-")
    yield state
    shutil.rmtree(state, ignore_errors=True)


def lab_site(bed: tb.Testbed, bmc_url: str, store: str | None = None, **bmc: Any) -> dict[str, Any]:
    """The dev site, Slurm-only, its BMCs on the emulator, air-gapped on the testbed's mirror; `store`: the
    endpoint of its object store (its state bucket)."""
    site = slurm_site(bmc_url, **bmc)
    site["software"] |= {"os": "debian-12", "driver_source": "mirror"}
    site["air_gap"] = {"packages": bed.mirror_url, "registry": "registry.testbed.local", "charts": "https://c.local"}
    if store is not None:
        site["object_store"] = {"endpoint": store, "jurisdiction": "EEA", "max_attempts": 3}
    return site


def host_config(bed: tb.Testbed) -> dict[str, Any]:
    """The stack keys that reach the testbed: each host's address and key (no user: the site's host_access, or
    root running the tests), and the base role only."""
    host_vars = {h: v | TESTBED_VARS for h, v in bed.host_vars(user=None).items()}
    return {"hostVars": host_vars, "hostTags": ["base"]}


def host_records(project: Project) -> dict[str, Any]:
    resources = project.state()["deployment"].get("resources", [])
    (record,) = [r for r in resources if r["type"] == HOSTS]
    outputs: dict[str, Any] = record["outputs"]
    return outputs


def installed(host: tb.Host, package: str) -> bool:
    status = (host.root() / "var/lib/dpkg/status").read_text(encoding="utf-8")
    return f"Package: {package}\nStatus: install ok installed" in status


def chrony_opts(host: tb.Host) -> str:
    path = host.root() / CHRONY
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    found = re.search(r"^DAEMON_OPTS=(.*)$", text, flags=re.M)
    return found.group(1) if found else ""


def test_nodes_and_hosts_through_the_engine(
    tmp_path: Path,
    bed: tb.Testbed,
    dev_bmcs: Emulator,
    ceph: CephCluster,
    ansible_state: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """preview -> up (nodes powered and booted, hosts configured) -> no changes -> one spec change (who logs in to
    the hosts) shows as exactly that change -> up -> a node powered off and a host's file edited behind fjord's
    back -> refresh shows both -> up repairs exactly those -> destroy. The state lives in the site's own Ceph RGW
    (`fjord state init`, then the `pulumi login s3://...` URL it prints)."""
    user = ceph.create_user("fjord-hosts")
    for key, value in {
        "FJORD_S3_ACCESS_KEY_ID": user.access_key,  # fjord state init
        "FJORD_S3_SECRET_ACCESS_KEY": user.secret_key,
        "AWS_ACCESS_KEY_ID": user.access_key,  # the engine's s3:// backend
        "AWS_SECRET_ACCESS_KEY": user.secret_key,
    }.items():
        monkeypatch.setenv(key, value)
    project = make_project(tmp_path, "hosts", backend="")
    env = {"FJORD_ANSIBLE_STATE": ansible_state}
    site = lab_site(bed, dev_bmcs.url, ceph.endpoint)
    project.write_stack(site, **host_config(bed))
    init = project.fjord_raw("state", "init")
    assert init.returncode == 0, init.stderr
    project.backend = init.stdout.split("pulumi login '", 1)[1].split("'", 1)[0]
    assert project.backend.startswith("s3://dev-state?endpoint="), project.backend
    project.init(bmc_password=BMC_PASSWORD)

    # preview: nodes and hosts would be created; nothing is done to either.
    preview = project.report("preview", **env)
    assert {(op, t) for op, t, _ in changes(preview)} >= {("create", POOL), ("create", HOSTS)}
    assert all(dev_bmcs.system(n)["PowerState"] == "Off" for n in DEV_NODES)
    assert not [h.name for h in bed.hosts if installed(h, "chrony")]

    # up: the nodes powered on, then (the HostConfig depends on its unit's nodes) the hosts configured.
    up = project.report("up", **env)
    assert up["ok"] is True, up["errors"]
    assert up["by_type"][POOL] == {"create": 1}
    assert up["by_type"][HOSTS] == {"create": 1}
    assert up["left_behind"] == []
    wait_on(dev_bmcs, DEV_NODES)
    assert pool_records(project)["converged"] == 4
    hosts = host_records(project)
    assert (hosts["hosts_run"], hosts["failed_hosts"], hosts["unreachable_hosts"]) == (4, [], [])
    assert hosts["tags"] == ["base"]
    for host in bed.hosts:
        assert installed(host, "chrony"), host.name
        assert "-x" in chrony_opts(host), host.name  # the role's setting for a host that shares its kernel
        assert (host.root() / "etc/sysctl.d/90-fjord.conf").is_file()
        assert not installed(host, "slurmd")  # only the tags asked for ran

    # The same spec again: nothing to do, for the nodes or the hosts.
    assert changes(project.report("preview", **env)) == []

    # One spec change: fjord logs in as the operator account and becomes root with sudo. The preview shows
    # exactly that: the unit's HostConfig (its inventory), nothing of the nodes.
    site = lab_site(bed, dev_bmcs.url, ceph.endpoint) | {"host_access": {"ssh_user": tb.OPERATOR}}
    project.write_stack(site, **host_config(bed))
    one = project.report("preview", **env)
    assert [(op, t, name) for op, t, name in changes(one)] == [("update", HOSTS, UNIT_HOSTS)]
    assert set(one["steps"][0]["diffs"]) == {"inventory", "inventory_digest"}
    assert one["steps"][0]["replaces"] == []
    # Root may not log in any more: the update must come in as the operator to succeed.
    root_keys = [h.root() / "root/.ssh/authorized_keys" for h in bed.hosts]
    for key in root_keys:
        key.rename(key.with_suffix(".off"))
    try:
        pools_before = pool_records(project)["state"]
        changed = project.report("up", **env)
        assert changed["ok"] is True, changed["errors"]
        assert [(op, t) for op, t, _ in changes(changed)] == [("update", HOSTS)]
        hosts = host_records(project)
        assert (hosts["hosts_run"], hosts["failed_hosts"], hosts["unreachable_hosts"]) == (4, [], [])
        assert hosts["inventory"].startswith(PACKED)  # the state keeps the inventory packed (docs/performance.md)
        inventory = json.loads(unpack_inventory(hosts["inventory"]))
        assert inventory["all"]["children"]["site_dev"]["vars"]["ansible_user"] == tb.OPERATOR

        # Drift behind fjord's back: a node powered off at its BMC, a managed file edited on a host.
        power_off_out_of_band(dev_bmcs, DEV_NODES[1])
        edited = bed.hosts[2]
        chrony = edited.root() / CHRONY
        chrony.write_text(re.sub(r"^DAEMON_OPTS=.*$", 'DAEMON_OPTS="-F 1"', chrony.read_text(), flags=re.M))
        refreshed = project.report("refresh", **env)
        assert refreshed["ok"] is True, refreshed["errors"]
        assert {s["type"] for s in refreshed["steps"]} >= {POOL, HOSTS}
        assert refreshed["left_behind"] == [f"{UNIT_HOSTS}: {edited.name}: drifted"]
        assert pool_records(project)["state"][DEV_NODES[1]]["power"] == "Off"
        assert host_records(project)["drifted_hosts"] == [edited.name]
        assert chrony_opts(edited) == '"-F 1"'  # refresh only reads: the file is as it was left
        assert dev_bmcs.system(DEV_NODES[1])["PowerState"] == "Off"

        # The preview shows both repairs; up powers that node on and reruns the playbook on that host only.
        assert sorted((op, t) for op, t, _ in changes(project.report("preview", **env))) == [
            ("update", POOL),
            ("update", HOSTS),
        ]
        repaired = project.report("up", **env)
        assert repaired["ok"] is True, repaired["errors"]
        assert repaired["left_behind"] == []
        wait_on(dev_bmcs, DEV_NODES)
        pools = pool_records(project)["state"]
        assert "power on" in pools[DEV_NODES[1]]["actions"]
        others = [n for n in DEV_NODES if n != DEV_NODES[1]]
        assert {n: known(pools[n]) for n in others} == {n: known(pools_before[n]) for n in others}
        hosts = host_records(project)
        assert (hosts["hosts_run"], hosts["drifted_hosts"]) == (1, [])
        assert "-x" in chrony_opts(edited)
        assert changes(project.report("preview", **env)) == []
    finally:
        for key in root_keys:
            key.with_suffix(".off").rename(key)

    # The state, read back from the bucket: both resources, the BMC password only as ciphertext.
    store = ObjectStore(ceph.endpoint, S3Credentials(user.access_key, user.secret_key))
    objects = [o.key for o in store.list("dev-state", ".pulumi/stacks/", with_metadata=False)]
    text = "\n".join(store.get_bytes("dev-state", k).decode() for k in objects if k.endswith("hosts.json"))
    assert POOL in text
    assert HOSTS in text
    assert "ciphertext" in text
    assert BMC_PASSWORD not in text

    # destroy (clusters are protected until listed in fjord:allowRemove): the resources leave the state; the
    # nodes keep running and the hosts keep their configuration.
    project.write_stack(site, **host_config(bed), allowRemove=["h100"])
    assert project.report("up", **env)["ok"] is True
    gone = project.report("destroy", **env)
    assert gone["ok"] is True, gone["errors"]
    assert gone["by_type"][POOL] == {"delete": 1}
    assert gone["by_type"][HOSTS] == {"delete": 1}
    assert not [r for r in project.state()["deployment"].get("resources") or [] if r["type"] in (POOL, HOSTS)]
    assert all(dev_bmcs.system(n)["PowerState"] == "On" for n in DEV_NODES)
    assert all(installed(h, "chrony") for h in bed.hosts)


def test_a_host_going_down_mid_up_is_named_and_the_next_up_does_only_that_host(
    tmp_path: Path, bed: tb.Testbed, dev_bmcs: Emulator, ansible_state: str
) -> None:
    """A host is powered off while `up` is converging the nodes (one at a time), before the playbook reaches it:
    `up` exits 3 naming the unit's HostConfig and the host, the other hosts are configured, the state holds no
    pending operation; with the host back, the next `up` updates only the HostConfig, on that host only, and
    leaves the nodes (already converged) alone."""
    project = make_project(tmp_path, "hostfault")
    env = {"FJORD_ANSIBLE_STATE": ansible_state}
    site = lab_site(bed, dev_bmcs.url, concurrency=1)
    project.write_stack(site, **host_config(bed))
    project.init(bmc_password=BMC_PASSWORD)
    down = bed.hosts[3]
    stop = threading.Event()

    def power_off_host_once_the_first_node_is_on() -> None:
        while not stop.is_set():
            with contextlib.suppress(requests.RequestException):  # the emulator busy: ask again
                if dev_bmcs.system(DEV_NODES[0])["PowerState"] == "On":
                    bed.stop(down)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=power_off_host_once_the_first_node_is_on, daemon=True)
    killer.start()
    try:
        failed = project.report("up", expect_rc=3, **env)
    finally:
        stop.set()
        killer.join(timeout=30)
    try:
        assert not down.alive  # it went down during this run
        assert failed["ok"] is False
        assert failed["left_behind"] == [f"{UNIT_HOSTS}: {down.name}: unreachable"]
        assert f"{UNIT_HOSTS}: {down.name}: unreachable" in failed["stderr"]
        assert "not converged" in failed["stderr"]
        # The engine finished its operations: no pending operation in the state, both resources recorded.
        deployment = project.state()["deployment"]
        assert not deployment.get("pending_operations")
        pools = pool_records(project)
        assert (pools["converged"], pools["failed"]) == (4, {})
        hosts = host_records(project)
        assert hosts["unreachable_hosts"] == [down.name]
        assert hosts["failed_hosts"] == []
        for host in bed.hosts[:3]:
            assert installed(host, "chrony"), host.name
    finally:
        bed.start(down)

    # The host is back: the preview and the next up touch only the HostConfig, and only that host.
    preview = project.report("preview", **env)
    assert [(op, t) for op, t, _ in changes(preview)] == [("update", HOSTS)]
    fixed = project.report("up", **env)
    assert fixed["ok"] is True, fixed["errors"]
    assert fixed["left_behind"] == []
    assert [(op, t) for op, t, _ in changes(fixed)] == [("update", HOSTS)]
    assert fixed["changes"].get("update") == 1
    hosts = host_records(project)
    assert (hosts["hosts_run"], hosts["unreachable_hosts"], hosts["failed_hosts"]) == (1, [], [])
    assert known(pool_records(project)["state"][DEV_NODES[0]]) == known(pools["state"][DEV_NODES[0]])
    assert installed(down, "chrony")
