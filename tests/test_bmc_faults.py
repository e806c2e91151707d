"""BMC faults, against sushy-emulator behind the fault-injecting proxy (tests/redfish_lab.py): answers that are
no Redfish (HTML and plain-text error pages, JSON that is no Redfish error, truncated or empty bodies), dropped
connections (before the BMC got the request, or after it carried it out), and a third of all connections
dropped at random.

What is proved: no exception of one node escapes the bulk run (`run_bulk`, `fjord bmc`, the NodePool
provider); each node's outcome says what failed and what the BMC had already taken; dropped requests are
retried with jittered backoff, within the node's deadline, and actions are not sent twice blindly; and
`fjord bmc power-on` converges in one run with a third of connections dropped.
"""

from __future__ import annotations

import copy
import json
import random
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fjord.adapters import redfish as rf
from fjord.cli.bmc import EXIT_NODES_FAILED, PASSWORD_ENV
from fjord.cli.main import app
from fjord.providers.baremetal import PASSWORD, BareMetalProvider, check_inputs, unit_props
from fjord.sizing.bmc import BmcEndpoint
from fjord.spec.load import default_site
from fjord.spec.models import Bmc

from .conftest import DEV_NODES
from .redfish_lab import (
    EMPTY_200,
    HTML_500,
    JSON_LIST_500,
    JSON_NOT_REDFISH,
    PLAIN_503,
    USERNAME,
    Answer,
    Emulator,
    FaultProxy,
    closed_port_url,
    fake_system,
)
from .redfish_lab import (
    PASSWORD as BMC_PASSWORD,
)
from .test_cli import write_stack

pytestmark = pytest.mark.bmc
NODES = [f"f-su000-n{i:03d}" for i in range(24)]
EMULATED = [fake_system(n, i) for i, n in enumerate(NODES + DEV_NODES)]
"""The systems the module's emulator (the `emulator` fixture, tests/conftest.py) serves."""
RESET = "Actions/ComputerSystem.Reset"


CREDS = rf.Credentials(USERNAME, BMC_PASSWORD)
FAST = rf.Options(retries=2, backoff_s=0.01, timeout_s=5, concurrency=8)


def target(node: str, url: str) -> rf.Target:
    return rf.Target(node, url, node)


def bmc_cli(folder: Path, endpoint: str, *args: str, **bmc: Any) -> tuple[int, str, str, BaseException | None]:
    """`fjord bmc lab ...` on the dev site whose BMCs are the emulator's systems (through `endpoint`)."""
    site = copy.deepcopy(default_site())
    site["bmc"] = {"username": USERNAME, "endpoint": endpoint, "backoff_s": 0.05, "power_timeout_s": 30, **bmc}
    write_stack(folder, "lab", site)
    result = CliRunner().invoke(
        app, ["bmc", "lab", *args, "--stacks-dir", str(folder)], env={PASSWORD_ENV: BMC_PASSWORD}
    )
    return result.exit_code, result.stdout, result.stderr, result.exception


def no_traceback(exception: BaseException | None, *texts: str) -> None:
    assert exception is None or isinstance(exception, SystemExit), "".join(traceback.format_exception(exception))
    for text in texts:
        assert "Traceback" not in text
        assert BMC_PASSWORD not in text


# --- answers that are no Redfish: each node's own error, never the run's ------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "says"),
    [
        (HTML_500, "server", "HTTP 500 to GET with 65 bytes of text/html, not a Redfish error"),
        (PLAIN_503, "server", "HTTP 503 to GET with 46 bytes of text/plain, not a Redfish error"),
        (JSON_NOT_REDFISH, "server", "HTTP 500 to GET with 29 bytes of application/json, not a Redfish error"),
        (JSON_LIST_500, "server", "HTTP 500 to GET with 8 bytes of application/json, not a Redfish error"),
        (EMPTY_200, "bad-answer", "HTTP 200 to GET with an empty body, not a Redfish JSON object"),
        (Answer(200, b"<html>login</html>", "text/html"), "bad-answer", "18 bytes of text/html, not a Redfish JSON"),
        ("json", "bad-answer", "not a Redfish JSON object (truncated, or not a Redfish service)"),
        ("wire", "unreachable", "the connection to the BMC failed or was dropped before it answered"),
        (Answer(401, b"<html>401</html>", "text/html"), "auth", "refused the credentials (HTTP 401)"),
        (Answer(400, b'"bad"'), "rejected", "HTTP 400 to GET with 5 bytes of application/json, not a Redfish error"),
    ],
    ids=[
        "html-500",
        "plain-503",
        "json-not-redfish",
        "json-list",
        "empty-200",
        "html-200",
        "truncated",
        "cut",
        "401",
        "400",
    ],
)
def test_an_answer_that_is_no_redfish_is_that_nodes_error(
    emulator: Emulator, proxy: FaultProxy, fault: Answer | str, kind: str, says: str
) -> None:
    nodes = NODES[0:4]
    bad = nodes[2]
    if isinstance(fault, Answer):
        proxy.faults.answers[f"/Systems/{bad}"] = fault
    else:
        proxy.faults.truncate[f"/Systems/{bad}"] = "json" if fault == "json" else "wire"
    seen: list[str] = []
    results = rf.run_bulk(
        [target(n, proxy.url) for n in nodes], CREDS, FAST, lambda n: n.info().system_id, lambda o: seen.append(o.node)
    )
    assert list(results) == nodes
    assert sorted(seen) == sorted(nodes)
    assert {n: o.value for n, o in results.items() if o.ok} == {n: n for n in nodes if n != bad}
    error = results[bad].error
    assert error is not None
    assert (error.node, error.kind) == (bad, kind)
    assert says in error.message
    assert str(error).startswith(f"{bad}: {kind}: ")
    retried = kind in rf.RETRYABLE
    assert results[bad].attempts == (FAST.retries + 1 if retried else 1)
    assert (results[bad].retried > 0) == retried
    no_traceback(None, str(error))


def test_a_fault_in_an_operation_is_that_nodes_error_and_not_retried(emulator: Emulator) -> None:
    nodes = NODES[4:7]

    def op(node: rf.RedfishNode) -> str:
        if node.target.node == nodes[1]:
            raise RuntimeError("a bug in the operation")
        return node.target.node

    results = rf.run_bulk([target(n, emulator.url) for n in nodes], CREDS, FAST, op)
    assert [o.ok for o in results.values()] == [True, False, True]
    error = results[nodes[1]].error
    assert error is not None
    assert (error.kind, error.message) == ("internal", "RuntimeError: a bug in the operation")
    assert results[nodes[1]].attempts == 1


def test_what_a_failed_node_had_changed_is_in_its_outcome(emulator: Emulator, proxy: FaultProxy) -> None:
    """The boot override is set, then the BMC answers the power action with an HTML 500 page: the node failed,
    and its outcome says the override was taken."""
    node = NODES[7]
    proxy.faults.answers[f"/Systems/{node}/{RESET}"] = HTML_500

    def pxe(n: rf.RedfishNode) -> None:
        n.set_boot("pxe", once=True)
        n.set_power("on")

    outcome = rf.with_retries(target(node, proxy.url), CREDS, FAST, pxe)
    assert outcome.error is not None
    assert outcome.error.kind == "server"
    assert "HTTP 500 to POST with 65 bytes of text/html" in outcome.error.message
    assert outcome.actions == ("boot pxe once",) * (FAST.retries + 1)
    assert emulator.system(node)["Boot"]["BootSourceOverrideTarget"] == "Pxe"


# --- dropped connections: what is sent again, and when ------------------------------------------------


def test_a_dropped_read_is_sent_again_within_the_operation(emulator: Emulator, proxy: FaultProxy) -> None:
    node = NODES[8]
    proxy.faults.drops[f"/Systems/{node}"] = "after"
    proxy.faults.error_budget[f"/Systems/{node}"] = 2
    outcome = rf.with_retries(target(node, proxy.url), CREDS, FAST, lambda n: n.info().system_id)
    assert outcome.value == node
    assert (outcome.attempts, outcome.retried) == (1, 2)
    assert [d[0] for d in proxy.faults.dropped] == ["GET", "GET"]


def test_a_dropped_action_is_not_sent_again_blindly(emulator: Emulator, proxy: FaultProxy) -> None:
    """A power action whose answer was lost may have been carried out: fjord does not send it again; the
    operation runs again, reads the power state first and acts only on what is still missing."""
    node = NODES[9]
    proxy.faults.drops[f"/Systems/{node}/{RESET}"] = "after"
    proxy.faults.error_budget[f"/Systems/{node}/{RESET}"] = 1
    posts: list[str] = []

    def power_on(n: rf.RedfishNode) -> str | None:
        if n.power() != "On":
            posts.append("reset")
            n.set_power("on")
        return n.wait_power("On", 30)

    outcome = rf.with_retries(target(node, proxy.url), CREDS, FAST, power_on)
    assert outcome.value == "On", outcome.error
    assert outcome.attempts == 2, "the operation ran again after the lost answer"
    assert proxy.faults.dropped == [("POST", f"/redfish/v1/Systems/{node}/{RESET}", "after")]
    # The first POST was carried out by the BMC; the second run re-read the state: at most one more POST.
    assert len(posts) in (1, 2)
    assert emulator.wait_power(node, "On") == "On"


def test_a_refused_connection_is_retried_but_never_past_the_deadline() -> None:
    """Full-jitter backoff within the deadline: every wait lies in [0, backoff_s * 2**(n-1)] and all of them
    end before the deadline, so a node gives up in time even with many retries left."""
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        time.sleep(s)

    options = rf.Options(retries=10, backoff_s=0.02, deadline_s=0.3, timeout_s=1)
    outcome = rf.with_retries(target("f-down", closed_port_url()), CREDS, options, lambda n: n.info(), sleep=sleep)
    assert outcome.error is not None
    assert outcome.error.kind == "unreachable"
    assert outcome.error.message.startswith("cannot connect to the BMC")
    assert outcome.attempts < options.retries + 1, "the deadline ended the retries, not their number"
    assert sum(slept) <= options.deadline_s
    assert all(0 <= s <= options.max_backoff_s for s in slept)


def test_wait_power_counts_a_dropped_poll_as_a_missed_look(emulator: Emulator, proxy: FaultProxy) -> None:
    node = NODES[10]
    options = rf.Options(retries=0, backoff_s=0.01, timeout_s=5)
    with rf.RedfishNode.open(target(node, proxy.url), CREDS, options) as n:
        n.set_power("on")
        proxy.faults.drops[f"/Systems/{node}"] = "before"
        proxy.faults.error_budget[f"/Systems/{node}"] = 3
        assert n.wait_power("On", 30, poll_s=0.2) == "On"
    assert len(proxy.faults.dropped) == 3


def test_wait_power_ends_at_the_nodes_deadline(emulator: Emulator) -> None:
    node = NODES[11]
    options = rf.Options(retries=0, deadline_s=0.5)
    with rf.RedfishNode.open(target(node, emulator.url), CREDS, options) as n:
        assert n.power() == "Off"
        # power_timeout 60 s, but the node's deadline comes first; the state is still Off (no change asked).
        assert n.wait_power("On", 60, poll_s=0.1) == "Off"


# --- the operator command and the provider ------------------------------------------------------------


@pytest.mark.slow
def test_cli_reports_which_nodes_changed_and_which_failed(
    emulator: Emulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """One BMC answers the power action with an HTML error page: the others are powered on, the table says
    which changed and which failed (with what it had already set), and the command exits 3, no traceback."""
    bad = DEV_NODES[1]
    proxy.faults.answers[f"/Systems/{bad}/{RESET}"] = HTML_500
    code, out, err, exc = bmc_cli(tmp_path, proxy.url, "pxe", "--limit", "*-n00[01]", retries=1)
    no_traceback(exc, out, err)
    assert code == EXIT_NODES_FAILED, err
    assert "pxe: 1 ok, 1 failed of 2 nodes, 2 changed" in err
    assert f"{bad}: server: the BMC answered HTTP 500 to POST with 65 bytes of text/html" in err
    assert "changed before failing: boot pxe once, boot pxe once" in err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line and "dev-h100" in line}
    assert "changed" in rows[DEV_NODES[0]]
    assert "failed" in rows[bad]
    code, out, err, exc = bmc_cli(tmp_path, proxy.url, "pxe", "--limit", "*-n00[01]", "--json", retries=0)
    no_traceback(exc, out, err)
    assert code == EXIT_NODES_FAILED
    doc = json.loads(out)
    assert doc[bad]["result"] == "failed"
    assert doc[bad]["error"]["kind"] == "server"
    assert doc[bad]["actions"] == ["boot pxe once"]
    assert doc[DEV_NODES[0]]["result"] == "changed"
    assert doc[DEV_NODES[0]]["power"] == "On"
    assert emulator.system(DEV_NODES[0])["PowerState"] == "On"


@pytest.mark.slow
def test_power_on_with_a_third_of_connections_dropped_converges_in_one_run(
    emulator: Emulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A third of all connections dropped at random (half before the BMC saw the request, half after it carried
    it out), with the site's default retries: one `fjord bmc power-on` run powers every node on; a rerun
    changes nothing."""
    nodes = DEV_NODES[2:4]
    assert [emulator.system(n)["PowerState"] for n in nodes] == ["Off", "Off"]
    proxy.faults.drop_rate = 1 / 3
    proxy.faults.rng = random.Random(2025)
    code, out, err, exc = bmc_cli(tmp_path, proxy.url, "power-on", "--limit", "*-n00[23]", "--json")
    no_traceback(exc, out, err)
    assert code == 0, err
    doc = json.loads(out)
    assert {n: (r["result"], r["power"]) for n, r in doc.items()} == dict.fromkeys(nodes, ("changed", "On"))
    assert [emulator.system(n)["PowerState"] for n in nodes] == ["On", "On"]
    dropped = proxy.faults.dropped
    assert len(dropped) >= 5, "the proxy really dropped connections"
    assert {when for _, _, when in dropped} == {"before", "after"}
    assert sum(r["retried_requests"] for r in doc.values()) > 0
    code, out, err, exc = bmc_cli(tmp_path, proxy.url, "power-on", "--limit", "*-n00[23]", "--json")
    no_traceback(exc, out, err)
    assert code == 0, err
    assert {n: r["result"] for n, r in json.loads(out).items()} == dict.fromkeys(nodes, "unchanged")


def test_provider_records_a_garbage_answer_against_the_node(emulator: Emulator, proxy: FaultProxy) -> None:
    """The NodePool provider: a node whose BMC answers JSON that is no Redfish error is in `failed`, the others
    in `state`; nothing escapes `create`."""
    nodes = NODES[12:15]
    bad = nodes[0]
    proxy.faults.answers[f"/Systems/{bad}"] = JSON_NOT_REDFISH
    spec = Bmc(username=USERNAME, retries=1, backoff_s=0.01, timeout_s=5, power="off", boot="disk")
    props = unit_props("f-su000", [BmcEndpoint(n, proxy.url, n) for n in nodes], spec, "unused")
    props[PASSWORD] = BMC_PASSWORD
    outs = BareMetalProvider().create(props).outs or {}
    assert list(outs["failed"]) == [bad]
    assert outs["failed"][bad].startswith("server: the BMC answered HTTP 500 to GET with 29 bytes of application/json")
    assert set(outs["state"]) == set(nodes[1:])
    assert BMC_PASSWORD not in json.dumps({k: v for k, v in outs.items() if k != PASSWORD})
    assert ("deadline_s", "is 0; allowed: a number > 0") in check_inputs({**props, "deadline_s": 0})


def test_provider_records_what_a_failed_node_had_changed(emulator: Emulator, proxy: FaultProxy) -> None:
    """The boot override lands, then the power action gets an HTML 500 page: `failed` says both."""
    node = NODES[15]
    proxy.faults.answers[f"/Systems/{node}/{RESET}"] = HTML_500
    spec = Bmc(username=USERNAME, retries=0, backoff_s=0.01, timeout_s=5, power="on", boot="pxe")
    props = unit_props("f-su000", [BmcEndpoint(node, proxy.url, node)], spec, "unused")
    props[PASSWORD] = BMC_PASSWORD
    outs = BareMetalProvider().create(props).outs or {}
    assert outs["state"] == {}
    assert outs["failed"][node].startswith("server: the BMC answered HTTP 500 to POST with 65 bytes of text/html")
    assert outs["failed"][node].endswith("(after 1 tries; changed before failing: boot pxe once)")
