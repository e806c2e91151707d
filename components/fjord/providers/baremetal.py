"""The bare-metal layer: one dynamic resource per scalable unit that keeps its nodes' BMCs in the desired
state (power, boot override, virtual media, BIOS attributes) through Redfish.

Granularity: the foundation's one resource per scalable unit (32 HGX nodes or 144 NVL72 trays), so a 100k-GPU
site adds ~175 resources, not 25,000. Inside a resource the work is per node:

- `node_changes(olds, news)` is the per-node diff: which nodes are new, moved, removed, failed last time or
  affected by a changed setting, and why. `diff` reports a change when any node (or any setting) changed.
- Safe on a live site (docs/safe-change.md): a node fjord already took on is never restarted here. A BIOS
  change is staged on its BMC (applied at its next boot) and recorded as `restart pending`; the restart is the
  drained, batched rollout's (HostConfig runs playbooks/upgrade-gpu-stack.yml, which reboots each drained node).
  The boot override (PXE or virtual media) is the bootstrap's action for a node fjord takes on for the first
  time, never a kept state: a changed `boot` or `image_url` applies to nodes added from then on, and a
  reconverge never arms PXE again. Reinstalling a running node is `fjord bmc pxe --limit <node>`, an action.
- Nor is a node it already took on ever powered off here while it is on (in service): a declared `power: off`
  reaches such a node only drained. Where fjord configures the hosts, the cluster's rollout
  (fjord.providers.rollout) drains it and then powers it off, batch by batch (`power_off_in_service: rollout`:
  the node is recorded as `power_held` here, not failed); elsewhere (`refuse`) the node is failed with an error
  that names it and says how to drain it. A node fjord takes on for the first time (never in service) is
  powered on or off as declared, without a drain; powering a node on never needs one.
- `create`/`update` converge only those nodes, at most `concurrency` at once; each node's operation reads
  the BMC first and acts only on a difference (idempotent), and is retried with exponential backoff on
  timeouts, refused connections and 5xx answers.
- A node that still fails is recorded in the outputs (`failed`: node -> one-line error) instead of failing
  the whole unit: the other nodes' results are kept, and the next `pulumi up` sees the failed nodes in its
  diff and converges exactly them. Nothing is lost and a rerun finishes the job.

The provider object is pickled into every resource, so it holds nothing but code: connections are opened
per node operation and closed again. The Redfish adapter (and sushy) is imported on first use, so the
program and `fjord plan` do not pay for it.

Secrets: the BMC password is the input `password`, a Pulumi secret (from `fjord:bmcPassword`); the
resource marks the output of the same name secret (`additional_secret_outputs`), so the state holds it
encrypted, and no other output, record or error message contains it.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pulumi
import pulumi.dynamic as dyn

from fjord.sizing.bmc import BmcEndpoint
from fjord.spec.models import Bmc

if TYPE_CHECKING:
    from fjord.adapters.redfish import Credentials, Options, Outcome, RedfishNode, Target

PASSWORD = "password"
NODE_SETTINGS = ("power", "bios")
"""Inputs whose change means every node of the unit must be converged again (BIOS: staged, never restarted)."""
FIRST_BOOT_SETTINGS = ("boot", "image_url")
"""How a node fjord takes on is first installed: used for new nodes only, never re-applied to a running one."""
OUTPUT_ONLY = ("__provider", "state", "failed", "converged")
BOOT_TARGET = {"pxe": "pxe", "virtual-media": "cd", "disk": "hdd"}
REDFISH_BOOT = {"pxe": "Pxe", "cd": "Cd", "hdd": "Hdd"}


@dataclass(frozen=True)
class Desired:
    """What every node of the unit should look like."""

    power: Literal["on", "off"]
    boot: Literal["pxe", "virtual-media", "disk"]
    image_url: str | None
    bios: Mapping[str, Any]
    power_timeout_s: float
    power_off_in_service: Literal["rollout", "refuse"] = "refuse"
    """Who powers off a node in service: the cluster's drained rollout, or nobody (refused, with how)."""

    @classmethod
    def of(cls, props: Mapping[str, Any]) -> Desired:
        return cls(
            power=props["power"],
            boot=props["boot"],
            image_url=props.get("image_url"),
            bios=dict(props.get("bios") or {}),
            power_timeout_s=float(props["power_timeout_s"]),
            power_off_in_service="rollout" if props.get("power_off_in_service") == "rollout" else "refuse",
        )


def refused_power_off(node: str) -> str:
    """Why a node in service is not powered off by a declared `bmc.power: off`, and how to do it drained."""
    return (
        "in service (on since fjord took it on): bmc.power off is never applied to a node that is not drained;"
        f" allowed: drain it first, `fjord configure <stack> --playbook drain.yml --limit {node}`, then power it"
        f" off, `fjord bmc <stack> power-off --limit {node}`"
    )


def _targets(props: Mapping[str, Any], names: list[str] | None = None) -> list[Target]:
    from fjord.adapters.redfish import Target

    nodes: Mapping[str, str] = props["nodes"]
    ids: Mapping[str, str] = props.get("system_ids") or {}
    return [Target(n, nodes[n], ids.get(n)) for n in (names if names is not None else list(nodes))]


def _access(props: Mapping[str, Any]) -> tuple[Credentials, Options]:
    from fjord.adapters.redfish import Credentials, Options

    creds = Credentials(str(props["username"]), str(props.get(PASSWORD) or ""))
    options = Options(
        verify_tls=bool(props["verify_tls"]),
        timeout_s=float(props["timeout_s"]),
        retries=int(props["retries"]),
        backoff_s=float(props["backoff_s"]),
        deadline_s=float(props.get("deadline_s") or Bmc().deadline_s),
        concurrency=int(props["concurrency"]),
    )
    return creds, options


def node_changes(olds: Mapping[str, Any], news: Mapping[str, Any]) -> dict[str, list[str]]:
    """The per-node diff: node -> reasons it must be converged (or removed), in the new nodes' order."""
    old_nodes: Mapping[str, str] = olds.get("nodes") or {}
    new_nodes: Mapping[str, str] = news.get("nodes") or {}
    old_ids: Mapping[str, str] = olds.get("system_ids") or {}
    new_ids: Mapping[str, str] = news.get("system_ids") or {}
    failed: Mapping[str, str] = olds.get("failed") or {}
    state: Mapping[str, Any] = olds.get("state") or {}
    settings = [k for k in NODE_SETTINGS if olds.get(k) != news.get(k)]
    changes: dict[str, list[str]] = {}
    for node, url in new_nodes.items():
        reasons: list[str] = []
        if node not in old_nodes:
            reasons.append("new node")
        else:
            if old_nodes[node] != url or old_ids.get(node) != new_ids.get(node):
                reasons.append("BMC address changed")
            if node in failed:
                reasons.append(f"failed last time: {failed[node]}")
            elif node not in state:
                reasons.append("not converged yet")
            elif news.get("power") and _power_drift(state[node], str(news["power"])):
                reasons.append(f"power is {state[node].get('power')}, want {news['power']}")
            reasons += [f"{k} changed" for k in settings]
        if reasons:
            changes[node] = reasons
    for node in old_nodes:
        if node not in new_nodes:
            changes[node] = ["removed from the unit"]
    return changes


def _power_drift(record: Mapping[str, Any], want: str) -> bool:
    """True when a node's record (as the last up or refresh read it) shows another power state than `want`."""
    power = record.get("power")
    return power is not None and str(power).lower() != want


ALLOWED: dict[str, tuple[str, ...]] = {
    "power": ("on", "off"),
    "boot": tuple(BOOT_TARGET),
    "on_delete": ("leave", "power-off"),
    "power_off_in_service": ("rollout", "refuse"),
}
POSITIVE = ("timeout_s", "power_timeout_s", "concurrency", "deadline_s")
NON_NEGATIVE = ("retries", "backoff_s")


def check_inputs(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The problems with a unit's inputs as (property, message): each names the value and what is allowed.
    The password's value is never part of a message."""
    problems: list[tuple[str, str]] = []
    if not news.get(PASSWORD):
        problems.append((PASSWORD, "no BMC password: set it with `pulumi config set --secret fjord:bmcPassword`"))
    unit = news.get("unit")
    if not isinstance(unit, str) or not unit:
        problems.append(("unit", f"is {unit!r}; allowed: the scalable unit's name"))
    nodes = news.get("nodes")
    if not isinstance(nodes, Mapping) or not nodes:
        problems.append(("nodes", "a scalable unit without nodes; allowed: node name -> BMC URL, at least one"))
    else:
        for node, url in nodes.items():
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                problems.append((f"nodes.{node}", f"is {url!r}; allowed: an http(s) URL of the node's BMC"))
    for key, allowed in ALLOWED.items():
        if news.get(key) not in allowed:
            problems.append((key, f"is {news.get(key)!r}; allowed: {', '.join(allowed)}"))
    if news.get("boot") == "virtual-media" and not news.get("image_url"):
        problems.append(("image_url", "is not set; allowed: an http(s) URL of an OS image when boot is virtual-media"))
    for key in (*POSITIVE, *NON_NEGATIVE):
        value = news.get(key)
        positive = key in POSITIVE
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is None or number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            problems.append((key, f"is {value!r}; allowed: a number {bound}"))
    if not isinstance(news.get("username"), str) or not news.get("username"):
        problems.append(("username", f"is {news.get('username')!r}; allowed: the BMC user's name"))
    return problems


def read_node(node: RedfishNode) -> dict[str, Any]:
    """What a node's BMC has now, as the fields of its record that `refresh` updates."""
    info = node.info()
    return {"power": info.power, "boot": info.boot_target, "system_id": info.system_id, "macs": list(info.macs)}


def converge(node: RedfishNode, want: Desired, first: bool = False) -> dict[str, Any]:
    """Bring one node to `want`, acting only where the BMC differs; return the node's record.

    Order: BIOS attributes (staged), then for a node fjord takes on for the first time (`first`) the boot
    override (and the OS image as virtual media), then power. Only a first-time node that is on is restarted
    (so that its first install boots); a node fjord already took on is never restarted here: a staged BIOS
    change waits for the drained rollout's reboot (`restart_pending`).
    """
    from fjord.adapters.redfish import RedfishError

    info = node.info()
    actions: list[str] = []
    bios_state = "none requested"
    if want.bios:
        current = node.bios()
        if current is None:
            bios_state = "not exposed by the BMC"
        else:
            pending = {k: v for k, v in want.bios.items() if current.get(k) != v}
            if pending:
                node.set_bios(pending)
                actions.append("bios")
            bios_state = "set"
    target = BOOT_TARGET[want.boot]
    if first:
        if want.boot == "virtual-media" and want.image_url and want.image_url not in node.virtual_media().values():
            node.insert_image(want.image_url)
            actions.append("virtual-media")
        if info.boot_target != REDFISH_BOOT[target]:
            # 'Once' for PXE and virtual media (install, then boot the disk); 'Continuous' for the disk.
            node.set_boot(target, once=target != "hdd")  # type: ignore[arg-type]
            actions.append(f"boot {target}")
    power = info.power
    restart_pending = False
    held = None
    if want.power == "off":
        if power == "On" and not first:
            # In service: powered off only drained (the cluster's rollout), never here.
            if want.power_off_in_service != "rollout":
                raise RedfishError(node.target.node, "rejected", refused_power_off(node.target.node))
            held = "off: left to the cluster's drained rollout (drain, then power off)"
        elif power != "Off":
            node.set_power("off")
            actions.append("power off")
    elif power != "On":
        node.set_power("on")
        actions.append("power on")
    elif actions and first:
        node.set_power("restart")
        actions.append("restart")
    elif "bios" in actions:
        restart_pending = True  # staged; the drained rollout's reboot applies it
    if any(a.startswith(("power", "restart")) for a in actions):
        landed: Literal["On", "Off"] = "Off" if want.power == "off" else "On"
        power = node.wait_power(landed, want.power_timeout_s)
        if power != landed:
            raise RedfishError(
                node.target.node,
                "timeout",
                f"power is {power} {want.power_timeout_s:g} s after asking for {landed}",
            )
    return {
        "power": power,
        "boot": REDFISH_BOOT[target] if first else str(info.boot_target),
        "bios": bios_state,
        "restart_pending": restart_pending,
        "power_held": held,
        "actions": actions,
        "model": info.model,
        "serial": info.serial,
        "bios_version": info.bios_version,
        "macs": list(info.macs),
        "system_id": info.system_id,
    }


Progress = Callable[["Outcome[Any]"], None]
PROGRESS_ENV = "FJORD_NODE_PROGRESS"
"""A file the provider appends one JSON line to per node it finishes (`unit`, `node`, `ok`): how `fjord
bootstrap` shows per-node progress while the engine runs the NodePools (the provider runs in the engine's
provider process, so a callback cannot reach the fjord process). Unset: nothing is written."""


def progress_sink(unit: str) -> Progress | None:
    """The on_done callback writing to $FJORD_NODE_PROGRESS, or None when it is unset. One line per node,
    written with one append (O_APPEND), so lines from the units converging at once do not interleave."""
    import json
    import os

    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return None

    def sink(outcome: Outcome[Any]) -> None:
        line = json.dumps({"unit": unit, "node": outcome.node, "ok": outcome.error is None}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    return sink


class BareMetalProvider(dyn.ResourceProvider):
    """create/diff/update/delete for a scalable unit's nodes (see the module docstring)."""

    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        """Reject inputs the unit cannot be converged with, one failure per property (see `check_inputs`)."""
        return dyn.CheckResult(news, [dyn.CheckFailure(k, m) for k, m in check_inputs(news)])

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = self.apply(props, {}, list(props["nodes"]), progress_sink(str(props["unit"])))
        return dyn.CreateResult(id_=str(props["unit"]), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        nodes = node_changes(olds, news)
        inputs = [k for k in news if k not in OUTPUT_ONLY and olds.get(k) != news.get(k)]
        return dyn.DiffResult(
            changes=bool(nodes or inputs),
            replaces=["unit"] if olds.get("unit") != news.get("unit") else [],
            delete_before_replace=True,
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        changes = node_changes(olds, news)
        removed = [n for n, why in changes.items() if n not in news["nodes"]]
        if removed and news["on_delete"] == "power-off":
            self.power_off({**olds, "nodes": {n: olds["nodes"][n] for n in removed}})
        todo = [n for n in news["nodes"] if n in changes]
        return dyn.UpdateResult(outs=self.apply(news, olds, todo, progress_sink(str(news["unit"]))))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        """Refresh: what each node's BMC has now (power, boot override) replaces the power and boot of the
        node's record, so a node powered off behind fjord's back shows as a change and the next `up`
        converges exactly that node. A BMC that does not answer is recorded in `failed` (retried by the next
        `up`); the refresh itself does not fail. The BMCs are only read, never changed."""
        from fjord.adapters.redfish import run_bulk

        nodes: Mapping[str, str] = props.get("nodes") or {}
        if not nodes:
            return dyn.ReadResult(id_, props)
        creds, options = _access(props)
        outcomes = run_bulk(_targets(props), creds, options, read_node)
        state = dict(props.get("state") or {})
        failed = dict(props.get("failed") or {})
        for name, outcome in outcomes.items():
            if outcome.error is None and outcome.value is not None:
                if name in state:
                    state[name] = {**state[name], **outcome.value}
            else:
                error = outcome.error
                failed[name] = f"{error.kind}: {error.message} (refresh)" if error else "no answer (refresh)"
        order = list(nodes)
        outs = {
            **props,
            "state": {n: state[n] for n in order if n in state},
            "failed": {n: failed[n] for n in order if n in failed},
        }
        return dyn.ReadResult(id_, outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("on_delete") == "power-off":
            self.power_off(props)

    # The work, also used directly by tests and tools.

    def apply(
        self,
        props: Mapping[str, Any],
        olds: Mapping[str, Any],
        todo: list[str],
        on_done: Progress | None = None,
    ) -> dict[str, Any]:
        """Converge the `todo` nodes; keep the earlier record of every other node still in the unit."""
        from fjord.adapters.redfish import run_bulk

        creds, options = _access(props)
        want = Desired.of(props)
        taken_on = olds.get("state") or {}
        # A node with a record was taken on before: never restarted, boot override never set again.
        outcomes = run_bulk(
            _targets(props, todo), creds, options, lambda n: converge(n, want, n.target.node not in taken_on), on_done
        )
        state = {n: r for n, r in (olds.get("state") or {}).items() if n in props["nodes"] and n not in outcomes}
        failed = {n: e for n, e in (olds.get("failed") or {}).items() if n in props["nodes"] and n not in outcomes}
        for name, outcome in outcomes.items():
            if outcome.error is None:
                state[name] = {**(outcome.value or {}), "attempts": outcome.attempts}
            else:
                state.pop(name, None)
                done = f"; changed before failing: {', '.join(outcome.actions)}" if outcome.actions else ""
                failed[name] = f"{outcome.error.kind}: {outcome.error.message} (after {outcome.attempts} tries{done})"
        order = list(props["nodes"])
        return {
            **{k: v for k, v in props.items() if k not in OUTPUT_ONLY},
            "state": {n: state[n] for n in order if n in state},
            "failed": {n: failed[n] for n in order if n in failed},
            "converged": len(state),
        }

    def power_off(self, props: Mapping[str, Any]) -> None:
        """Power off every node of `props` (delete with on_delete 'power-off', or nodes removed from a unit);
        raise naming the nodes that failed, so that the engine keeps the resource and a rerun tries again.

        A node fjord took on (it has a record in `state`) that is still on is in service: it is never powered
        off here, since nothing restarts a node that is not drained. It is named with how to drain it and power
        it off; once it is off, the rerun finds it off and the removal goes through."""
        outcomes = _power_off(props, list(props["nodes"]), keep_on=props.get("state") or {})

        def why(n: str, value: object) -> str:
            return refused_power_off(n) if value == "in service" else f"power is {value}"

        bad = [f"{o.error}" if o.error else f"{n}: {why(n, o.value)}" for n, o in outcomes.items() if o.value != "Off"]
        if bad:
            raise RuntimeError(f"{len(bad)} of {len(outcomes)} nodes not powered off: " + "; ".join(bad))

    def power_states(self, props: Mapping[str, Any], names: list[str]) -> dict[str, str | None]:
        """Each node's power state as its BMC reports it now (None where it did not answer)."""
        from fjord.adapters.redfish import run_bulk

        creds, options = _access(props)
        outcomes = run_bulk(_targets(props, names), creds, options, lambda n: n.power())
        return {n: (str(o.value) if o.error is None and o.value is not None else None) for n, o in outcomes.items()}

    def power_off_nodes(self, props: Mapping[str, Any], names: list[str]) -> dict[str, str]:
        """Power off `names` (drained by the caller) and wait for it; node -> error for each that did not land."""
        outcomes = _power_off(props, names, keep_on=())
        return {
            n: (str(o.error) if o.error else f"power is {o.value} after asking for Off")
            for n, o in outcomes.items()
            if o.value != "Off"
        }


def _power_off(props: Mapping[str, Any], names: list[str], keep_on: Container[str]) -> dict[str, Outcome[str | None]]:
    """Power off each of `names` that is on and wait for it, except those in `keep_on` (nodes in service),
    whose outcome value is "in service"; a node already off is "Off"."""
    from fjord.adapters.redfish import run_bulk

    creds, options = _access(props)
    timeout = float(props["power_timeout_s"])

    def off(node: RedfishNode) -> str | None:
        if node.power() != "Off":
            if node.target.node in keep_on:
                return "in service"
            node.set_power("off")
            return node.wait_power("Off", timeout)
        return "Off"

    return run_bulk(_targets(props, names), creds, options, off)


PROVIDER = BareMetalProvider()


def unit_props(
    unit: str,
    nodes: list[BmcEndpoint],
    bmc: Bmc,
    password: pulumi.Input[str],
    power_off_in_service: Literal["rollout", "refuse"] = "refuse",
) -> dict[str, Any]:
    """A unit's resource inputs: its nodes (name -> BMC URL, and `system_ids` on a lab endpoint), the BMC
    access settings and the desired node state, all from the site's `bmc`; `power_off_in_service` says whether
    the cluster's drained rollout powers off nodes in service (where fjord configures the hosts) or nobody does."""
    return {
        "power_off_in_service": power_off_in_service,
        "unit": unit,
        "nodes": {e.node: e.url for e in nodes},
        "system_ids": {e.node: e.system_id for e in nodes if e.system_id is not None},
        "username": bmc.username,
        PASSWORD: pulumi.Output.secret(password),
        "verify_tls": bmc.verify_tls,
        "timeout_s": bmc.timeout_s,
        "retries": bmc.retries,
        "backoff_s": bmc.backoff_s,
        "deadline_s": bmc.deadline_s,
        "concurrency": bmc.concurrency,
        "power_timeout_s": bmc.power_timeout_s,
        "power": bmc.power,
        "boot": bmc.boot,
        "image_url": bmc.image_url,
        "bios": dict(bmc.bios),
        "on_delete": bmc.on_delete,
    }


class NodePool(dyn.Resource, module="baremetal", name="NodePool"):
    """A scalable unit's nodes on their BMCs. Outputs: `state` (node -> record), `failed` (node -> error)."""

    converged: pulumi.Output[int]
    """Pulumi reads this annotation to return the engine's number as an int (a float otherwise)."""
    if TYPE_CHECKING:  # For type checkers only: Pulumi re-reads class annotations for every instance.
        state: pulumi.Output[dict[str, Any]]
        failed: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=[PASSWORD])
        super().__init__(
            PROVIDER,
            name,
            {**props, "state": None, "failed": None, "converged": None},
            pulumi.ResourceOptions.merge(opts, secret),
        )
