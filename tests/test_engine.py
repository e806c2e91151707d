"""fjord through the real Pulumi engine (the CLI built by .ci/setup-pulumi.sh), end to end.

A small stack (the dev site made Slurm-only, so no Kubernetes plugin is needed) whose four nodes' BMCs are
sushy-emulator systems: `fjord preview|up|refresh|destroy` run as subprocesses against a file:// backend
(tests/test_engine_rgw.py runs the same engine against Ceph RGW). Each step's JSON report and the emulator's
own view of the nodes are checked.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from fjord.spec.load import default_site

from .conftest import DEV_NODES
from .engine_env import Project, make_project
from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import USERNAME, Emulator

pytestmark = [pytest.mark.engine, pytest.mark.bmc, pytest.mark.usefixtures("engine")]
NODES = DEV_NODES
POOL = "pulumi-python:dynamic/baremetal:NodePool"


def slurm_site(bmc_url: str, **bmc: Any) -> dict[str, Any]:
    """The dev site, Slurm-only (no Kubernetes platform), its nodes' BMCs on the emulator."""
    site = copy.deepcopy(default_site())
    site["clusters"][0]["scheduler"] = "slurm"
    for tenant in site["tenants"]:
        tenant["gpu_quotas"] = []
    site["bmc"] = {
        "scheme": "http",
        "endpoint": bmc_url,
        "username": USERNAME,
        "retries": 1,
        "backoff_s": 0.2,
        "timeout_s": 5,
        "power_timeout_s": 60,
        **bmc,
    }
    return site


def power_off_out_of_band(em: Emulator, node: str) -> None:
    """What a technician (or a tripped PDU) does: the node goes off without fjord being asked."""
    r = requests.post(
        f"{em.url}/redfish/v1/Systems/{node}/Actions/ComputerSystem.Reset",
        json={"ResetType": "ForceOff"},
        auth=(USERNAME, BMC_PASSWORD),
        timeout=10,
    )
    assert r.status_code < 300, r.text
    assert em.wait_power(node, "Off", 60) == "Off"


def changes(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(op, type, name) of every step that changes something."""
    return [(s["op"], s["type"], s["urn"].rsplit("::", 1)[-1]) for s in report["steps"] if s["op"] != "same"]


def pool_records(project: Project) -> dict[str, Any]:
    deployment = project.state()["deployment"]
    pools = [r for r in deployment.get("resources", []) if r["type"] == POOL]
    assert len(pools) == 1, [r["type"] for r in deployment.get("resources", [])]
    outputs: dict[str, Any] = pools[0]["outputs"]
    return outputs


def known(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None}


def wait_on(em: Emulator, nodes: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        assert em.wait_power(node, "On", max(1.0, deadline - time.monotonic())) == "On", node


def test_preview_up_drift_refresh_repair_destroy(tmp_path: Path, dev_bmcs: Emulator) -> None:
    project = make_project(tmp_path, "e2e")
    project.write_stack(slurm_site(dev_bmcs.url), configureHosts=False)
    project.init(bmc_password=BMC_PASSWORD)

    # preview: the whole stack would be created, the BMCs are only read.
    preview = project.report("preview")
    created = {t for op, t, _ in changes(preview) if op == "create"}
    assert {POOL, "fjord:components:Site", "fjord:components:ScalableUnit"} <= created
    assert all(dev_bmcs.system(n)["PowerState"] == "Off" for n in NODES)

    # up: every node powered on with its boot override; the JSON summary counts the creates by type.
    up = project.report("up")
    assert up["ok"] is True
    assert up["by_type"][POOL] == {"create": 1}
    wait_on(dev_bmcs, NODES)
    outs = pool_records(project)
    assert outs["converged"] == 4
    assert outs["failed"] == {}
    assert {outs["state"][n]["power"] for n in NODES} == {"On"}

    # The same spec again: nothing to do.
    assert changes(project.report("preview")) == []

    # One spec change: the preview shows exactly that change, on exactly that resource.
    project.write_stack(slurm_site(dev_bmcs.url, timeout_s=6), configureHosts=False)
    one = project.report("preview")
    assert [(op, t) for op, t, _ in changes(one)] == [("update", POOL)]
    assert one["steps"][0]["diffs"] == ["timeout_s"]
    assert one["steps"][0]["replaces"] == []
    assert project.report("up")["ok"] is True
    before = pool_records(project)["state"]

    # A node powered off behind fjord's back: refresh reads it from the BMC into the state.
    power_off_out_of_band(dev_bmcs, NODES[1])
    refreshed = project.report("refresh")
    assert refreshed["ok"] is True
    drift = [s for s in refreshed["steps"] if s["type"] == POOL]
    assert drift, refreshed["steps"]
    assert pool_records(project)["state"][NODES[1]]["power"] == "Off"
    assert all(dev_bmcs.system(n)["PowerState"] == "On" for n in NODES if n != NODES[1])  # refresh changes nothing

    # The next preview shows the repair, and up powers exactly that node on again.
    assert [(op, t) for op, t, _ in changes(project.report("preview"))] == [("update", POOL)]
    repaired = project.report("up")
    assert repaired["ok"] is True
    wait_on(dev_bmcs, NODES)
    after = pool_records(project)["state"]
    assert "power on" in after[NODES[1]]["actions"]
    assert {n: known(after[n]) for n in NODES if n != NODES[1]} == {n: known(before[n]) for n in NODES if n != NODES[1]}

    # The BMC password is in the state only as ciphertext (passphrase provider), never in plain text.
    text = project.state_text()
    assert BMC_PASSWORD not in text
    assert "ciphertext" in text
    for report in (preview, up, one, refreshed, repaired):
        assert BMC_PASSWORD not in str(report)

    # destroy: clusters are protected until the stack lists them in fjord:allowRemove (and an up drops the
    # flag); then the resources leave the state and the nodes are left running (bmc.on_delete: 'leave').
    refused = project.report("destroy", expect_rc=3)
    assert any("protected" in e for e in refused["errors"])
    assert any("fjord:allowRemove" in e for e in refused["errors"])
    project.write_stack(slurm_site(dev_bmcs.url, timeout_s=6), configureHosts=False, allowRemove=["h100"])
    assert project.report("up")["ok"] is True
    gone = project.report("destroy")
    assert gone["ok"] is True
    assert gone["by_type"][POOL] == {"delete": 1}
    assert not [r for r in project.state()["deployment"].get("resources") or [] if r["type"] == POOL]
    assert all(dev_bmcs.system(n)["PowerState"] == "On" for n in NODES)


def test_a_bmc_service_dying_mid_up_fails_naming_the_unit_and_the_next_up_does_the_rest(
    tmp_path: Path, dev_bmcs: Emulator
) -> None:
    """The BMC service goes down once the first node is on (nodes converge one at a time): `up` finishes its
    engine operation (no pending operation), exits 3 naming the unit and each node left behind, keeps the
    first node's result; with the BMCs back, the next `up` converges exactly the nodes left behind."""
    project = make_project(tmp_path, "fault")
    site = slurm_site(dev_bmcs.url, concurrency=1, retries=1, backoff_s=0.2, timeout_s=3)
    project.write_stack(site, configureHosts=False)
    project.init(bmc_password=BMC_PASSWORD)

    stop = threading.Event()

    def kill_after_first_node() -> None:
        while not stop.is_set():
            try:
                if dev_bmcs.system(NODES[0])["PowerState"] == "On":
                    time.sleep(3)  # fjord polls the power too: let it see the first node on, then go down
                    dev_bmcs.stop(keep_workdir=True)
                    return
            except requests.RequestException:
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_after_first_node, daemon=True)
    killer.start()
    try:
        failed = project.report("up", expect_rc=3)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert failed["ok"] is False
    behind = failed["left_behind"]
    assert behind, failed
    assert all(line.startswith("dev-h100-su000-baremetal: ") for line in behind)
    assert not [line for line in behind if NODES[0] in line]
    assert "not converged" in failed["stderr"]
    assert "dev-h100-su000-baremetal" in failed["stderr"]
    deployment = project.state()["deployment"]
    assert not deployment.get("pending_operations")
    outs = pool_records(project)
    first = outs["state"][NODES[0]]
    assert set(outs["failed"]) == {line.split(": ")[1] for line in behind}

    dev_bmcs.resume()
    preview = project.report("preview")
    assert [(op, t) for op, t, _ in changes(preview)] == [("update", POOL)]
    fixed = project.report("up")
    assert fixed["ok"] is True
    assert fixed["left_behind"] == []
    wait_on(dev_bmcs, NODES)
    outs = pool_records(project)
    assert outs["failed"] == {}
    # The finished node was not touched again: its record (what was done, how many tries) is the same. The
    # engine drops null values from nested outputs it hands back, so those are left out of the comparison.
    assert known(outs["state"][NODES[0]]) == known(first)
    assert outs["converged"] == 4
