"""Bare metal through Redfish, against real Redfish servers: sushy-emulator (fake driver) processes started
here, with basic auth, a fault-injecting proxy in front for 5xx and slow answers, a closed port for a BMC
that is down, and a local server for OS images.

The fake driver applies power changes 1-11 s after asking (random), so tests that change power wait by
polling with a timeout; the rest do not touch power. Each test uses its own systems of the shared emulator,
so the order of tests does not matter.
"""

from __future__ import annotations

import copy
import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from typer.testing import CliRunner

from fjord.adapters import redfish as rf
from fjord.cli.bmc import EXIT_NODES_FAILED, PASSWORD_ENV
from fjord.cli.main import app
from fjord.providers.baremetal import PASSWORD, BareMetalProvider, node_changes, unit_props
from fjord.sizing.bmc import BmcEndpoint
from fjord.spec.load import default_site
from fjord.spec.models import Bmc

from .conftest import DEV_NODES
from .redfish_lab import (
    PASSWORD as BMC_PASSWORD,
)
from .redfish_lab import (
    USERNAME,
    Emulator,
    FaultProxy,
    ImageServer,
    closed_port_url,
    fake_system,
)
from .test_cli import write_stack

pytestmark = pytest.mark.bmc
NODES = [f"t-su000-n{i:03d}" for i in range(28)]
EMULATED = [fake_system(n, i) for i, n in enumerate(NODES + DEV_NODES)]
"""The systems the module's emulator (the `emulator` fixture, tests/conftest.py) serves: the embedded dev site's
nodes too, for the `fjord bmc` commands."""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageServer]:
    server = ImageServer(tmp_path_factory.mktemp("i4-images"))
    yield server
    server.stop()


CREDS = rf.Credentials(USERNAME, BMC_PASSWORD)
FAST = rf.Options(retries=2, backoff_s=0.05, timeout_s=5, concurrency=8)


def target(emulator: Emulator, node: str, url: str | None = None) -> rf.Target:
    return rf.Target(node, url or emulator.url, node)


def props(urls: dict[str, str], **bmc: Any) -> dict[str, Any]:
    """The resource inputs the component would register, with the password as the engine hands it over."""
    spec = Bmc(
        **{"username": USERNAME, "retries": 2, "backoff_s": 0.05, "timeout_s": 5, "power_timeout_s": 30, **bmc},
    )
    p = unit_props("t-su000", [BmcEndpoint(n, u, n) for n, u in urls.items()], spec, "unused")
    p[PASSWORD] = BMC_PASSWORD
    return p


# --- the adapter -------------------------------------------------------------------------------------


def test_discover_every_system_with_its_inventory(emulator: Emulator) -> None:
    found = {s.system_id: s for s in rf.discover(emulator.url, CREDS, FAST)}
    assert set(found) == set(NODES + DEV_NODES)
    first = found[NODES[1]]
    assert first.macs == ("52:54:00:00:00:01",)
    assert first.bios_version == "2.1.1"
    assert first.health == "OK"
    assert first.manufacturer == "Sushy Emulator"
    assert first.power in ("On", "Off")


def test_bios_attributes_read_and_set(emulator: Emulator) -> None:
    with rf.RedfishNode.open(target(emulator, NODES[2]), CREDS, FAST) as node:
        assert node.bios() == {"BootMode": "Uefi", "ProcVirtualization": "Enabled", "SriovGlobalEnable": "Disabled"}
        node.set_bios({"SriovGlobalEnable": "Enabled"})
        assert node.bios()["SriovGlobalEnable"] == "Enabled"  # type: ignore[index]


def test_boot_override_and_virtual_media(emulator: Emulator, images: ImageServer) -> None:
    with rf.RedfishNode.open(target(emulator, NODES[3]), CREDS, FAST) as node:
        node.set_boot("pxe", once=True)
        # The emulator stores 'Once' and reports 'Continuous' (a known quirk): only the target is checked.
        assert node.info().boot_target == "Pxe"
        node.insert_image(images.image_url)
        node.insert_image(images.image_url)  # idempotent
        assert node.virtual_media() == {"Cd": images.image_url}
    media = emulator.system(NODES[3])
    assert media["Boot"]["BootSourceOverrideTarget"] == "Pxe"


def test_wrong_credentials_name_the_node_and_never_the_password(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wr0ng-" + BMC_PASSWORD
    caplog.set_level(logging.DEBUG)
    outcome = rf.with_retries(target(emulator, NODES[0]), rf.Credentials(USERNAME, wrong), FAST, lambda n: n.info())
    assert outcome.error is not None
    assert outcome.error.kind == "auth"
    assert outcome.attempts == 1, "wrong credentials are not retried"
    text = str(outcome.error)
    assert text.startswith(f"{NODES[0]}: auth: ")
    assert "refused the credentials" in text
    shown = text + "".join(traceback.format_exception(outcome.error)) + caplog.text
    assert wrong not in shown
    assert BMC_PASSWORD not in shown


def test_bmc_not_listening_is_retried_then_named(emulator: Emulator) -> None:
    down = rf.Target("t-down", closed_port_url(), "x")
    outcome = rf.with_retries(down, CREDS, FAST, lambda n: n.info())
    assert outcome.error is not None
    assert outcome.error.kind == "unreachable"
    assert outcome.attempts == FAST.retries + 1
    assert str(outcome.error).startswith("t-down: unreachable: cannot connect")


def test_slow_bmc_times_out_and_a_patient_client_waits(emulator: Emulator, proxy: FaultProxy) -> None:
    proxy.faults.delays[f"/Systems/{NODES[4]}"] = 1.5
    impatient = rf.Options(retries=1, backoff_s=0.05, timeout_s=0.5)
    outcome = rf.with_retries(target(emulator, NODES[4], proxy.url), CREDS, impatient, lambda n: n.info())
    assert outcome.error is not None
    assert outcome.error.kind == "timeout"
    assert outcome.attempts == 2
    patient = rf.with_retries(target(emulator, NODES[4], proxy.url), CREDS, FAST, lambda n: n.info().system_id)
    assert patient.value == NODES[4]


def test_5xx_answers_are_retried_with_jittered_backoff(emulator: Emulator, proxy: FaultProxy) -> None:
    proxy.faults.errors[f"/Systems/{NODES[5]}"] = 503
    proxy.faults.error_budget[f"/Systems/{NODES[5]}"] = 3
    slept: list[float] = []
    outcome = rf.with_retries(
        target(emulator, NODES[5], proxy.url), CREDS, FAST, lambda n: n.info().system_id, sleep=slept.append
    )
    assert outcome.value == NODES[5]
    # sushy sends a 5xx GET once more itself (2 answers), fjord sends the request again (1 more): one operation.
    assert (outcome.attempts, outcome.retried) == (1, 1)
    assert len(slept) == 1
    assert 0 <= slept[0] <= FAST.backoff_s
    proxy.faults.error_budget[f"/Systems/{NODES[5]}"] = 100
    slept.clear()
    failed = rf.with_retries(target(emulator, NODES[5], proxy.url), CREDS, FAST, lambda n: n.info(), sleep=slept.append)
    assert failed.error is not None
    assert failed.error.kind == "server"
    assert "503" in failed.error.message
    # FAST.retries of the operation, each after FAST.retries of the request that failed: full-jitter backoff,
    # retry n waiting between 0 and backoff_s * 2**(n-1).
    assert failed.attempts == FAST.retries + 1
    assert failed.retried == (FAST.retries + 1) * FAST.retries
    assert len(slept) == failed.retried + FAST.retries
    per_request = [slept[i : i + FAST.retries] for i in range(0, len(slept), FAST.retries + 1)]
    for waits in per_request:
        assert all(0 <= w <= FAST.backoff_s * 2**n for n, w in enumerate(waits)), waits
    assert len(set(slept)) > 1, "jittered, not one fixed delay"


def test_bulk_runs_every_node_and_one_failure_stops_none(emulator: Emulator, proxy: FaultProxy) -> None:
    proxy.faults.errors[f"/Systems/{NODES[7]}"] = 500
    targets = [target(emulator, n, proxy.url) for n in NODES[6:14]]
    seen: list[str] = []
    results = rf.run_bulk(targets, CREDS, FAST, lambda n: n.info().system_id, lambda o: seen.append(o.node))
    assert list(results) == NODES[6:14]
    assert sorted(seen) == sorted(NODES[6:14])
    assert [n for n, o in results.items() if not o.ok] == [NODES[7]]
    assert all(o.value == n for n, o in results.items() if n != NODES[7])


# --- the dynamic provider ----------------------------------------------------------------------------


@pytest.mark.slow
def test_provider_partial_failure_then_rerun_converges(emulator: Emulator, proxy: FaultProxy) -> None:
    """create with one node answering 500s: the others converge, the failure is recorded against the node;
    the diff of a rerun holds exactly that node; update finishes it; a further apply changes nothing."""
    nodes = NODES[14:18]
    bad = nodes[1]
    proxy.faults.errors[f"/Systems/{bad}"] = 500
    urls = {n: proxy.url if n == bad else emulator.url for n in nodes}
    news = props(urls, power="on", boot="pxe", bios={"SriovGlobalEnable": "Enabled"})
    provider = BareMetalProvider()

    created = provider.create(news)
    assert created.id == "t-su000"
    outs = created.outs or {}
    assert list(outs["failed"]) == [bad]
    assert outs["failed"][bad].startswith("server: the BMC answered HTTP 500")
    assert set(outs["state"]) == set(nodes) - {bad}
    for n in set(nodes) - {bad}:
        record = outs["state"][n]
        assert record["power"] == "On"
        assert record["boot"] == "Pxe"
        assert record["bios"] == "set"
        view = emulator.system(n)
        assert view["PowerState"] == "On"
        assert view["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert BMC_PASSWORD not in repr({k: v for k, v in outs.items() if k != PASSWORD})

    # The rerun: the diff names the failed node only; the fault is gone; update converges it.
    assert node_changes(outs, news) == {bad: [f"failed last time: {outs['failed'][bad]}"]}
    assert provider.diff("t-su000", outs, news).changes
    proxy.faults.errors.clear()
    updated = provider.update("t-su000", outs, news).outs or {}
    assert updated["failed"] == {}
    assert set(updated["state"]) == set(nodes)
    assert updated["state"][nodes[0]] == outs["state"][nodes[0]], "nodes that were done are kept, not redone"
    assert emulator.system(bad)["PowerState"] == "On"

    # Idempotent re-apply: no diff, and converging every node again takes no action.
    assert not provider.diff("t-su000", updated, news).changes
    again = provider.apply(news, updated, list(nodes))
    assert [again["state"][n]["actions"] for n in nodes] == [[]] * len(nodes)


def set_power(emulator: Emulator, node: str, power: Literal["on", "off"]) -> None:
    """The operator's own power action at the node's BMC (as `fjord bmc power-off --limit` does), waited for."""
    want: Literal["On", "Off"] = "On" if power == "on" else "Off"
    with rf.RedfishNode.open(target(emulator, node), CREDS, FAST) as bmc:
        bmc.set_power(power)
        assert bmc.wait_power(want, 60) == want


@pytest.mark.slow
def test_provider_virtual_media_boot_and_power_off_on_delete(emulator: Emulator, images: ImageServer) -> None:
    nodes = NODES[18:20]
    news = props(
        dict.fromkeys(nodes, emulator.url),
        power="on",
        boot="virtual-media",
        image_url=images.image_url,
        on_delete="power-off",
    )
    provider = BareMetalProvider()
    outs = provider.create(news).outs or {}
    assert outs["failed"] == {}
    for n in nodes:
        assert outs["state"][n]["boot"] == "Cd"
        assert "virtual-media" in outs["state"][n]["actions"]
        assert emulator.system(n)["Boot"]["BootSourceOverrideTarget"] == "Cd"
    # The nodes were taken on and are on: in service. Removing them never powers them off undrained: the
    # delete fails naming each with how to drain it, and nothing is powered off.
    with pytest.raises(RuntimeError, match="2 of 2 nodes not powered off") as caught:
        provider.delete("t-su000", outs)
    for n in nodes:
        assert f"{n}: in service" in str(caught.value)
        assert f"drain.yml --limit {n}" in str(caught.value)
    assert [emulator.system(n)["PowerState"] for n in nodes] == ["On", "On"]
    assert BMC_PASSWORD not in str(caught.value)

    # Drained and powered off by the operator (here: one of them): the rerun removes what is off and still
    # refuses the other.
    set_power(emulator, nodes[0], "off")
    with pytest.raises(RuntimeError, match=f"1 of 2 nodes not powered off: {nodes[1]}: in service"):
        provider.delete("t-su000", outs)
    assert [emulator.system(n)["PowerState"] for n in nodes] == ["Off", "On"]
    set_power(emulator, nodes[1], "off")
    provider.delete("t-su000", outs)
    assert [emulator.system(n)["PowerState"] for n in nodes] == ["Off", "Off"]


@pytest.mark.slow
def test_removed_nodes_never_taken_on_are_powered_off(emulator: Emulator) -> None:
    # A node listed but never taken on (no record: its bootstrap never finished) is not in service: a unit's
    # removal powers it off as bmc.on_delete says.
    node = NODES[27]
    set_power(emulator, node, "on")
    BareMetalProvider().delete("t-su000", props({node: emulator.url}, on_delete="power-off"))
    assert emulator.system(node)["PowerState"] == "Off"


def test_provider_delete_names_nodes_it_could_not_power_off(emulator: Emulator) -> None:
    outs = props({NODES[20]: closed_port_url()}, on_delete="power-off", retries=0)
    with pytest.raises(RuntimeError, match=f"1 of 1 nodes not powered off: {NODES[20]}: unreachable") as caught:
        BareMetalProvider().delete("t-su000", outs)
    assert BMC_PASSWORD not in str(caught.value)


def test_per_node_diff(emulator: Emulator) -> None:
    olds = {
        **props({"a": "http://x", "b": "http://x", "c": "http://x"}),
        "state": {"a": {}, "b": {}},
        "failed": {"c": "timeout: no answer"},
    }
    news = props({"a": "http://x", "b": "http://y", "d": "http://x"})
    assert node_changes(olds, news) == {
        "b": ["BMC address changed"],
        "d": ["new node"],
        "c": ["removed from the unit"],
    }
    changed = props({"a": "http://x", "b": "http://x", "c": "http://x"}, power="off")
    assert node_changes(olds, changed) == {
        "a": ["power changed"],
        "b": ["power changed"],
        "c": ["failed last time: timeout: no answer", "power changed"],
    }
    assert BareMetalProvider().check({}, {**news, PASSWORD: ""}).failures[0].property == PASSWORD


def test_leave_on_delete_touches_nothing(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # A closed port: any BMC call would fail; and no power-off is even attempted.
    tried: list[str] = []
    monkeypatch.setattr(BareMetalProvider, "power_off", lambda self, p: tried.append(p["unit"]))
    BareMetalProvider().delete("t-su000", props({NODES[21]: closed_port_url()}, on_delete="leave"))
    assert tried == []
    BareMetalProvider().delete("t-su000", props({NODES[21]: closed_port_url()}, on_delete="power-off"))
    assert tried == ["t-su000"]  # the spy does see a delete that powers off


def test_provider_object_pickles_without_connections() -> None:
    import dill

    provider = dill.loads(dill.dumps(BareMetalProvider(), recurse=True))
    assert isinstance(provider, BareMetalProvider)
    assert vars(provider) == {}


# --- the operator commands ---------------------------------------------------------------------------


def bmc_cli(folder: Path, endpoint: str, *args: str, password: str | None = BMC_PASSWORD) -> tuple[int, str, str]:
    """Run `fjord bmc lab ...` on the dev site whose BMCs are the emulator's systems of the same names."""
    site = copy.deepcopy(default_site())
    site["bmc"] = {"username": USERNAME, "endpoint": endpoint, "retries": 1, "backoff_s": 0.05, "power_timeout_s": 30}
    write_stack(folder, "lab", site)
    env = {PASSWORD_ENV: password} if password is not None else {}
    result = CliRunner().invoke(app, ["bmc", "lab", *args, "--stacks-dir", str(folder)], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_status_table_and_json(emulator: Emulator, tmp_path: Path) -> None:
    code, out, err = bmc_cli(tmp_path, emulator.url, "status")
    assert code == 0, err
    for header in ("node", "power", "boot target", "health", "firmware"):
        assert header in out
    for n in DEV_NODES:
        assert n in out
    assert "status: 4 ok, 0 failed of 4 nodes" in err
    code, out, _ = bmc_cli(tmp_path, emulator.url, "status", "--json", "--limit", "*-n00[01]")
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == DEV_NODES[:2]
    assert doc[DEV_NODES[1]]["bios_version"] == f"2.{(len(NODES) + 1) % 7}.1"  # fake_system numbering
    assert doc[DEV_NODES[1]]["health"] == "OK"
    assert BMC_PASSWORD not in out + err


def test_cli_failures_name_the_node_and_exit_non_zero(emulator: Emulator, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.faults.errors[f"/Systems/{DEV_NODES[2]}"] = 500
    code, out, err = bmc_cli(tmp_path, proxy.url, "status")
    assert code == EXIT_NODES_FAILED
    assert "status: 3 ok, 1 failed of 4 nodes" in err
    assert f"{DEV_NODES[2]}: server: the BMC answered HTTP 500" in err
    wrong = "Wr0ng-" + BMC_PASSWORD
    code, out, err = bmc_cli(tmp_path, emulator.url, "status", "--limit", DEV_NODES[0], password=wrong)
    assert code == EXIT_NODES_FAILED
    assert f"{DEV_NODES[0]}: auth: the BMC refused the credentials" in err
    assert wrong not in out + err


def test_cli_rejects_missing_password_and_empty_limit(emulator: Emulator, tmp_path: Path) -> None:
    code, _, err = bmc_cli(tmp_path, emulator.url, "status", password=None)
    assert code == 1
    assert PASSWORD_ENV in err
    code, _, err = bmc_cli(tmp_path, emulator.url, "power-off", "--limit", "nothing-*")
    assert code == 1
    assert "matches no node" in err


@pytest.mark.slow
def test_cli_power_on_and_pxe(emulator: Emulator, tmp_path: Path) -> None:
    code, _, err = bmc_cli(tmp_path, emulator.url, "pxe", "--limit", DEV_NODES[3])
    assert code == 0, err
    assert "pxe: 1 ok, 0 failed of 1 nodes" in err
    view = emulator.system(DEV_NODES[3])
    assert view["PowerState"] == "On"
    assert view["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    code, _, err = bmc_cli(tmp_path, emulator.url, "power-on", "--limit", DEV_NODES[3])
    assert code == 0, err
    assert "power-on: 1 ok" in err


@pytest.mark.slow
def test_cli_site_wide_power_off_and_pxe_need_yes(emulator: Emulator, tmp_path: Path) -> None:
    """Without --limit, power-off and pxe act on every node of the site: without a terminal they refuse unless
    --yes says so (exit 2), and touch no node."""
    code, _, err = bmc_cli(tmp_path, emulator.url, "power-on")  # not destructive: no question asked
    assert code == 0, err
    before = {n: emulator.system(n) for n in DEV_NODES}
    assert {v["PowerState"] for v in before.values()} == {"On"}
    for action in ("power-off", "pxe"):
        code, _, err = bmc_cli(tmp_path, emulator.url, action)
        assert code == 2, err
        assert "without --limit acts on all 4 nodes of stack lab" in err
        assert "--yes" in err
    after = {n: emulator.system(n) for n in DEV_NODES}
    assert [v["PowerState"] for v in after.values()] == ["On"] * 4
    assert [v["Boot"] for v in after.values()] == [v["Boot"] for v in before.values()]
    code, _, err = bmc_cli(tmp_path, emulator.url, "power-off", "--yes")
    assert code == 0, err
    assert "power-off: 4 ok, 0 failed of 4 nodes" in err
    assert {emulator.system(n)["PowerState"] for n in DEV_NODES} == {"Off"}
    code, _, err = bmc_cli(tmp_path, emulator.url, "power-on")
    assert code == 0, err


def test_a_bios_or_boot_change_never_restarts_a_running_node(emulator: Emulator, proxy: FaultProxy) -> None:
    """A node fjord took on is never restarted by the bare-metal layer: a BIOS change is staged on the BMC and
    left for the drained rollout's reboot; a changed boot method is for nodes added later and never re-arms PXE.
    Every reset request is refused by the proxy, so a restart attempt would fail the node."""
    nodes = NODES[22:24]
    olds = props(dict.fromkeys(nodes, emulator.url), power="on", boot="pxe")
    provider = BareMetalProvider()
    created = provider.create(olds).outs or {}
    assert created["failed"] == {}
    for n in nodes:
        emulator.wait_power(n, "On")
        # The bootstrap's boot override is done: the node now boots its disk (as after its first install).
        with rf.RedfishNode.open(target(emulator, n), CREDS, FAST) as node:
            node.set_boot("hdd", once=False)
    proxy.faults.errors["ComputerSystem.Reset"] = 409
    news = props(dict.fromkeys(nodes, proxy.url), power="on", boot="virtual-media", image_url="http://x/i.iso")
    news["bios"] = {"SriovGlobalEnable": "Enabled"}
    assert node_changes({**created, "nodes": news["nodes"]}, news) == {n: ["bios changed"] for n in nodes}
    updated = provider.update("t-su000", {**created, "nodes": news["nodes"]}, news).outs or {}
    assert updated["failed"] == {}, updated["failed"]
    for n in nodes:
        record = updated["state"][n]
        assert record["actions"] == ["bios"]
        assert record["restart_pending"] is True
        view = emulator.system(n)
        assert view["PowerState"] == "On"
        assert view["Boot"]["BootSourceOverrideTarget"] == "Hdd"  # PXE not armed again, no virtual media
        with rf.RedfishNode.open(target(emulator, n), CREDS, FAST) as node:
            assert node.bios()["SriovGlobalEnable"] == "Enabled"  # type: ignore[index]
            assert "http://x/i.iso" not in node.virtual_media().values()  # no image inserted


@pytest.mark.slow
def test_a_declared_power_off_never_powers_off_a_node_in_service(emulator: Emulator, proxy: FaultProxy) -> None:
    """`bmc.power: off` reaches a node fjord already took on (on: in service) only drained. Without the cluster's
    rollout (hosts not configured by fjord) the node is failed with an error naming it and how to drain it; with
    it, the node is held for the rollout (drain, then power off). Every reset request of those nodes is refused
    by the proxy, so a power-off attempt would fail them. A node never in service still powers on without a
    drain. (The drain, then the power-off: tests/test_slurm_testbed.py::test_a_declared_power_off_drains_first.)"""
    running, new = NODES[24:26], NODES[26]
    created = BareMetalProvider().create(props(dict.fromkeys(running, emulator.url), power="on", boot="disk")).outs
    assert created is not None
    assert created["failed"] == {}
    for n in running:
        assert emulator.wait_power(n, "On") == "On"
    proxy.faults.errors["ComputerSystem.Reset"] = 409
    news = props(dict.fromkeys(running, proxy.url), power="off", boot="disk")
    olds = {**created, "nodes": news["nodes"]}
    assert node_changes(olds, news) == {n: ["power is On, want off", "power changed"] for n in running}
    refused = BareMetalProvider().update("t-su000", olds, news).outs or {}
    assert list(refused["failed"]) == running
    for n in running:
        why = refused["failed"][n]
        assert why.startswith("rejected: in service (on since fjord took it on): bmc.power off is never applied")
        assert f"`fjord configure <stack> --playbook drain.yml --limit {n}`" in why
        assert f"`fjord bmc <stack> power-off --limit {n}`" in why
        assert "(after 1 tries)" in why  # refused, not retried, nothing changed before
        assert emulator.system(n)["PowerState"] == "On"
    held = BareMetalProvider().update("t-su000", olds, news | {"power_off_in_service": "rollout"}).outs or {}
    assert held["failed"] == {}
    for n in running:
        record = held["state"][n]
        assert record["power_held"] == "off: left to the cluster's drained rollout (drain, then power off)"
        assert (record["actions"], record["power"]) == ([], "On")
        assert emulator.system(n)["PowerState"] == "On"
    # A new node (never in service, off), added beside the running ones: powered on, no drain involved.
    grown = props({**dict.fromkeys(running, proxy.url), new: emulator.url}, power="on", boot="disk")
    assert emulator.system(new)["PowerState"] == "Off"
    added = BareMetalProvider().update("t-su000", {**created, "nodes": grown["nodes"]}, grown).outs or {}
    assert added["failed"] == {}
    assert "power on" in added["state"][new]["actions"]
    assert emulator.system(new)["PowerState"] == "On"
    assert [emulator.system(n)["PowerState"] for n in running] == ["On", "On"]
