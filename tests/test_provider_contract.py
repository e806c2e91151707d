"""The dynamic providers as complete Pulumi providers: check (clear errors), diff (update versus replace) and
read (what the BMC really has, so refresh sees drift). The engine calls these; here they are called directly,
the Redfish ones against sushy-emulator. tests/test_engine.py runs them through the real engine."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import requests

from fjord.hosts.inventory import json_digest
from fjord.providers.baremetal import PASSWORD, BareMetalProvider, check_inputs, node_changes, unit_props
from fjord.providers.playbook import PACKED, HostConfigProvider, pack_inventory, unpack_inventory
from fjord.providers.playbook import check_inputs as host_check
from fjord.sizing.bmc import BmcEndpoint
from fjord.spec.models import Bmc

from .redfish_lab import PASSWORD as BMC_PASSWORD
from .redfish_lab import USERNAME, Emulator, closed_port_url, fake_system

NODES = [f"c-su000-n{i:03d}" for i in range(3)]


def props(urls: dict[str, str], **bmc: Any) -> dict[str, Any]:
    spec = Bmc(**{"username": USERNAME, "retries": 1, "backoff_s": 0.05, "timeout_s": 5, "power_timeout_s": 30, **bmc})
    p = unit_props("c-su000", [BmcEndpoint(n, u, n) for n, u in urls.items()], spec, "unused")
    p[PASSWORD] = BMC_PASSWORD
    return p


# --- check ---------------------------------------------------------------------------------------------


def test_check_accepts_what_the_component_registers() -> None:
    good = props(dict.fromkeys(NODES, "http://127.0.0.1:1"))
    assert check_inputs(good) == []
    assert BareMetalProvider().check({}, good).failures == []


@pytest.mark.parametrize(
    ("change", "prop", "words"),
    [
        ({"power": "standby"}, "power", ["'standby'", "on, off"]),
        ({"boot": "usb"}, "boot", ["'usb'", "pxe, virtual-media, disk"]),
        ({"on_delete": "wipe"}, "on_delete", ["'wipe'", "leave, power-off"]),
        ({"boot": "virtual-media", "image_url": None}, "image_url", ["virtual-media"]),
        ({"concurrency": 0}, "concurrency", ["0", "> 0"]),
        ({"retries": -1}, "retries", ["-1", ">= 0"]),
        ({"timeout_s": "fast"}, "timeout_s", ["'fast'", "a number"]),
        ({"nodes": {}}, "nodes", ["without nodes"]),
        ({"nodes": {"n0": "ftp://bmc"}}, "nodes.n0", ["'ftp://bmc'", "http(s) URL"]),
        ({PASSWORD: ""}, PASSWORD, ["fjord:bmcPassword"]),
        ({"username": ""}, "username", ["''"]),
    ],
)
def test_check_names_the_property_the_value_and_what_is_allowed(
    change: dict[str, Any], prop: str, words: list[str]
) -> None:
    bad = props(dict.fromkeys(NODES, "http://127.0.0.1:1")) | change
    failures = BareMetalProvider().check({}, bad).failures
    assert [f.property for f in failures] == [prop]
    for word in words:
        assert word in failures[0].reason
    assert BMC_PASSWORD not in str([f.reason for f in failures])


def test_host_config_check() -> None:
    inventory = '{"all": {"hosts": {"h1": {}}}}'
    good = {
        "site": "dev",
        "group": "su_h100_000",
        "playbook": "site.yml",
        "inventory": inventory,
        "inventory_digest": json_digest(inventory),
    }
    assert host_check(good) == []
    assert HostConfigProvider().check({}, good).failures == []
    problems = dict(host_check(good | {"playbook": "nope.yml", "inventory": "{", "group": ""}))
    assert set(problems) == {"playbook", "inventory", "group"}
    assert "'nope.yml'" in problems["playbook"]
    assert "site.yml" in problems["playbook"]
    assert "not JSON" in problems["inventory"]
    assert dict(host_check(good | {"inventory_digest": "0" * 64})).keys() == {"inventory_digest"}
    # The input HostConfig registers: the JSON packed; the digest stays that of the JSON, and the plain JSON of
    # states written before packing is still accepted (above).
    packed = good | {"inventory": pack_inventory(inventory)}
    assert packed["inventory"].startswith(PACKED)
    assert unpack_inventory(packed["inventory"]) == inventory
    assert host_check(packed) == []
    assert dict(host_check(packed | {"inventory_digest": "0" * 64})).keys() == {"inventory_digest"}
    corrupt = dict(host_check(good | {"inventory": PACKED + "not base64!"}))
    assert corrupt.keys() == {"inventory"}
    assert "does not decode" in corrupt["inventory"]


def test_host_config_runs_ansible_on_the_unpacked_inventory(monkeypatch: pytest.MonkeyPatch) -> None:
    """create, update and read (refresh) hand Ansible the inventory document, whether the input is packed (as
    HostConfig registers it) or the plain JSON of a state written before packing."""
    from fjord.adapters import ansible
    from fjord.adapters.ansible import PlaybookResult

    doc = {"all": {"children": {"su_h100_000": {"hosts": {"h1": {"ansible_host": "10.0.0.1"}}}}}}
    plain_json = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    seen: list[Any] = []

    def fake_run(playbook: str, inventory: Any, **_kw: Any) -> PlaybookResult:
        seen.append(inventory)
        return PlaybookResult(playbook, "successful", 0, {}, 0.1)

    monkeypatch.setattr(ansible, "run_playbook", fake_run)
    for value in (pack_inventory(plain_json), plain_json):
        props = {"site": "dev", "group": "su_h100_000", "playbook": "site.yml", "inventory": value, "hosts": ["h1"]}
        props["inventory_digest"] = json_digest(plain_json)
        outs = HostConfigProvider().create(dict(props)).outs
        assert outs["inventory"] == value  # kept as registered: refresh and the next diff read it back
        HostConfigProvider().update("dev/su_h100_000", outs, props | {"inventory_digest": "c" * 64})  # reruns
        HostConfigProvider().read("dev/su_h100_000", outs)
    assert len(seen) == 6
    assert all(inventory == doc for inventory in seen)


# --- diff ----------------------------------------------------------------------------------------------


def test_diff_replaces_only_for_the_unit_and_updates_for_the_rest() -> None:
    p = BareMetalProvider()
    olds = props(dict.fromkeys(NODES, "http://127.0.0.1:1")) | {"state": {key: {"power": "On"} for key in NODES}}
    same = p.diff("c-su000", olds, copy.deepcopy(olds))
    assert (same.changes, same.replaces) == (False, [])
    timeout = p.diff("c-su000", olds, olds | {"timeout_s": 9.0})
    assert (timeout.changes, timeout.replaces) == (True, [])
    renamed = p.diff("c-su000", olds, olds | {"unit": "c-su001"})
    assert (renamed.changes, renamed.replaces, renamed.delete_before_replace) == (True, ["unit"], True)


def test_a_node_read_powered_off_is_converged_again() -> None:
    news = props(dict.fromkeys(NODES, "http://127.0.0.1:1"))
    olds = news | {"state": {n: {"power": "On"} for n in NODES} | {NODES[1]: {"power": "Off"}}, "failed": {}}
    assert node_changes(olds, news) == {NODES[1]: ["power is Off, want on"]}
    assert BareMetalProvider().diff("c-su000", olds, news).changes is True
    assert node_changes(olds, news | {"power": "off"})[NODES[0]] == ["power is On, want off", "power changed"]


# --- read (refresh) against emulated BMCs ---------------------------------------------------------------


EMULATED = [fake_system(n, i, power="On") for i, n in enumerate(NODES)]
"""The systems the module's emulator (the `emulator` fixture, tests/conftest.py) serves, powered on."""


@pytest.mark.bmc
def test_read_reports_what_the_bmcs_have_and_a_dead_bmc_as_failed(emulator: Emulator) -> None:
    urls = dict.fromkeys(NODES, emulator.url) | {NODES[2]: closed_port_url()}
    recorded = {n: {"power": "On", "boot": "Pxe", "actions": ["power on"], "serial": "x"} for n in NODES}
    state = props(urls) | {"state": recorded, "failed": {}, "converged": 3}
    r = requests.post(
        f"{emulator.url}/redfish/v1/Systems/{NODES[0]}/Actions/ComputerSystem.Reset",
        json={"ResetType": "ForceOff"},
        auth=(USERNAME, BMC_PASSWORD),
        timeout=10,
    )
    assert r.status_code < 300
    assert emulator.wait_power(NODES[0], "Off", 60) == "Off"
    read = BareMetalProvider().read("c-su000", copy.deepcopy(state))
    outs = dict(read.outs or {})
    assert read.id == "c-su000"
    assert outs["state"][NODES[0]]["power"] == "Off"
    assert outs["state"][NODES[0]]["actions"] == ["power on"]  # the record keeps what fjord did
    assert outs["state"][NODES[1]]["power"] == "On"
    assert list(outs["failed"]) == [NODES[2]]
    assert "refresh" in outs["failed"][NODES[2]]
    assert BMC_PASSWORD not in str({k: v for k, v in outs.items() if k != PASSWORD})
    # What the next up does with it: converge the node that is off and retry the one that did not answer.
    assert set(node_changes(outs, props(urls))) == {NODES[0], NODES[2]}
    assert emulator.system(NODES[1])["PowerState"] == "On"  # read changes nothing
