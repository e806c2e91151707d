"""ClusterRollout: a Pulumi dynamic resource per cluster that rolls a change of the GPU stack through the cluster's
nodes in service, drained, batch after batch (docs/safe-change.md).

One resource per cluster, not per scalable unit: the batches are `upgrade.batch_percent` of the whole cluster
(fjord.hosts.rollout.batch_plan), the units of a cluster never roll at the same time, and a batch past
`upgrade.max_fail_percentage` stops the rest of the cluster: no node of a later batch, in any unit, is drained
or restarted. Different clusters roll at the same time (independent resources): a cluster is the failure
domain the budget speaks about, and a site of many clusters is not held up by its slowest one.

Inputs: the cluster's hosts in its order, its inventory (every unit's hosts, one JSON string), the software
versions (BIOS settings included) and the playbooks' digest that the hosts get, and the rollout policy (the
cluster's `upgrade`, the playbook). `update` rolls the hosts in service (recorded at the last run) when the
versions or the roles changed, and the hosts a stopped or failed rollout left behind (`rollout_pending`);
hosts new to the cluster are not in service yet and get site.yml from their unit's HostConfig, which waits
for this resource and never gives site.yml to a host still pending here. `create` only records the hosts
(a new cluster's hosts are configured by HostConfig); it rolls nothing.

Each batch is one run of `playbook` limited to the batch (serial 100 % within it): each node drained (Slurm
drain, Kubernetes cordon and drain), changed, rebooted where needed, validated and returned.

The declared power (`bmc.power`, where fjord keeps the nodes' BMCs) rolls the same way. To `off`: each batch's
nodes that are still on are drained (playbooks/drain.yml, Slurm reason `fjord: power-off`) and only the drained
ones are powered off through their BMCs; a node that could not be drained stays on and counts as failed
(the unit's NodePool never powers off a node in service). Back to `on`: the NodePool powers the nodes on (an
off node runs nothing), then this rollout runs `playbook` on them: validated, and returned only from fjord's own
drain. The BMC password is the secret input `bmc_password` (kept encrypted in the state, never in an output).

The provider object holds no clients (Pulumi pickles it into the resource's inputs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi.dynamic as dyn

from fjord.hosts.inventory import Inventory
from fjord.hosts.rollout import Batch, BatchOutcome, RolloutResult, batch_plan, roll
from fjord.providers.playbook import pack_inventory, unpack_inventory
from fjord.spec.models import Upgrade

ROLLING = ("versions", "playbooks_digest", "power")
"""Inputs whose change rolls every host in service."""
ROLLOUT_PLAYBOOK = "upgrade-gpu-stack.yml"
DRAIN_PLAYBOOK = "drain.yml"
WAIT_PLAYBOOK = "wait-for-hosts.yml"
BMC_PASSWORD = "bmc_password"
BMC_ACCESS = (
    "nodes",
    "system_ids",
    "username",
    "verify_tls",
    "timeout_s",
    "retries",
    "backoff_s",
    "deadline_s",
    "concurrency",
    "power_timeout_s",
)
"""What the rollout keeps of the BMC settings (`fjord.providers.baremetal.unit_props`): how to reach them."""


@dataclass(frozen=True)
class Due:
    """What an update rolls: the hosts (in the cluster's order), its batches, and whether each drained node is
    rebooted whatever its driver did (staged BIOS settings)."""

    hosts: tuple[str, ...]
    batches: tuple[Batch, ...]
    reboot: bool
    power_off: bool = False
    """The batches are drained and powered off (declared `power: off`), not upgraded."""
    boot_wait: bool = False
    """The nodes were just powered on: each batch first waits for them to boot (playbooks/wait-for-hosts.yml)."""


def due(olds: Mapping[str, Any], news: Mapping[str, Any]) -> Due:
    """The hosts an update rolls and its batch plan (pure: see the module docstring).

    A change of the versions or roles rolls every host in service; `power` going to off drains and powers off
    every host in service; `power` back on rolls (validates and returns) only the hosts this rollout powered off
    (`powered_off`); hosts a stopped rollout left (`rollout_pending`) are rolled again in any case."""
    hosts: list[str] = list(news.get("hosts") or [])
    known = olds.get("hosts")
    in_service = set(hosts) if known is None else set(known)
    pending = set(olds.get("rollout_pending") or [])
    changed = any(olds.get(k) != news.get(k) for k in ("versions", "playbooks_digest"))
    power_off = _value(news, "power") == "off"
    back = set(olds.get("powered_off") or []) if _value(olds, "power") == "off" and not power_off else set()
    everyone = changed or (power_off and _value(olds, "power") != "off")
    todo = tuple(h for h in hosts if h in in_service and (everyone or h in pending or h in back))
    old_bios = (olds.get("versions") or {}).get("bios")
    new_bios = (news.get("versions") or {}).get("bios")
    # Hosts left behind by a rollout that rebooted every node keep that need.
    reboot = old_bios != new_bios or (bool(pending & set(todo)) and bool(olds.get("reboot_pending")))
    plan = batch_plan(todo, len([h for h in hosts if h in in_service]), _policy(news))
    boot_wait = bool(back) or (bool(pending & set(todo)) and bool(olds.get("boot_wait_pending")))
    return Due(todo, tuple(plan), reboot, power_off=power_off, boot_wait=boot_wait and not power_off)


def powered_off(olds: Mapping[str, Any], news: Mapping[str, Any], result: RolloutResult | None) -> list[str]:
    """The hosts this rollout has powered off and not yet returned, in the cluster's order."""
    hosts = list(news.get("hosts") or [])
    before = set(olds.get("powered_off") or [])
    if _value(news, "power") == "off":
        now = before | set(result.done if result else ())
    else:
        now = before & set(result.pending) if result else (before if _value(olds, "power") == "on" else set())
    return [h for h in hosts if h in now]


def _value(props: Mapping[str, Any], key: str) -> Any:
    # Power: a state without it (no BMCs kept, or from before) had the nodes on.
    return props.get(key) or "on" if key == "power" else props.get(key)


def _policy(props: Mapping[str, Any]) -> Upgrade:
    rollout = props.get("rollout") or {}
    return Upgrade(
        batch_percent=int(rollout.get("batch_percent") or 10),
        max_fail_percentage=int(rollout.get("max_fail_percentage") or 0),
    )


def check_inputs(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The problems with a ClusterRollout's inputs as (property, message), naming the value and what is allowed."""
    problems: list[tuple[str, str]] = []
    for key in ("site", "cluster"):
        if not isinstance(news.get(key), str) or not news.get(key):
            problems.append((key, f"is {news.get(key)!r}; allowed: a non-empty name"))
    rollout = news.get("rollout")
    if not isinstance(rollout, Mapping):
        problems.append(("rollout", f"is {rollout!r}; allowed: batch_percent, max_fail_percentage and playbook"))
    else:
        for key, low in (("batch_percent", 1), ("max_fail_percentage", 0)):
            value = rollout.get(key)
            # The engine hands numbers over as floats: a whole number is what counts.
            number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
            if number is None or not float(number).is_integer() or not low <= number <= 100:
                problems.append((f"rollout.{key}", f"is {value!r}; allowed: a whole number from {low} to 100"))
    hosts = news.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        problems.append(("hosts", f"is {hosts!r}; allowed: the cluster's host names"))
    return problems


class ClusterRolloutProvider(dyn.ResourceProvider):
    """create records the hosts; diff and update roll the hosts in service (see the module docstring)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, [dyn.CheckFailure(k, m) for k, m in check_inputs(news)])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = [k for k in (*ROLLING, "hosts", "rollout") if _value(olds, k) != _value(news, k)]
        if olds.get("rollout_pending"):
            changed.append("rollout_pending")  # the last rollout stopped or failed: roll those hosts again
        return dyn.DiffResult(
            changes=bool(changed), replaces=[], stables=["site", "cluster"], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(id_=f"{props['site']}/{props['cluster']}", outs=_outputs(props, None, False))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        work = due(olds, news)
        if not work.hosts:
            return dyn.UpdateResult(outs=_outputs(news, None, False) | {"powered_off": powered_off(olds, news, None)})

        def run(batch: Batch) -> BatchOutcome:
            if work.power_off:
                return self._power_off(news, batch)
            if not work.boot_wait:
                return self._run(news, batch, work.reboot)
            # Just powered on: the nodes that booted are validated and returned; the rest count as failed.
            booted = self._wait(news, batch)
            if booted.error or not booted.done:
                return BatchOutcome((), booted.failed, booted.unreachable, booted.error)
            rolled = self._run(news, booted.done, work.reboot)
            return BatchOutcome(
                rolled.done, rolled.failed + booted.failed, rolled.unreachable + booted.unreachable, rolled.error
            )

        result = roll(work.batches, _policy(news).max_fail_percentage, run)
        outs = _outputs(news, result, work.reboot, work.boot_wait) | {"powered_off": powered_off(olds, news, result)}
        return dyn.UpdateResult(outs=outs)

    def _wait(self, props: Mapping[str, Any], batch: Batch) -> BatchOutcome:
        """Wait for the batch's nodes to answer (just powered on); what did not answer is unreachable."""
        from fjord.adapters.ansible import AnsibleSettings, run_playbook

        result = run_playbook(
            WAIT_PLAYBOOK,
            json.loads(unpack_inventory(props["inventory"])),
            site=props["site"],
            limit=batch,
            settings=AnsibleSettings(),
        )
        bad = set(result.failed_hosts) | set(result.unreachable_hosts)
        return BatchOutcome(
            tuple(h for h in batch if h in result.hosts and h not in bad),
            (),
            tuple(h for h in batch if h in bad),
            error=result.error if result.crashed else "",
        )

    def _power_off(self, props: Mapping[str, Any], batch: Batch) -> BatchOutcome:
        """Drain the batch's nodes that are still on, then power off exactly those that drained."""
        from fjord.adapters.ansible import AnsibleSettings, run_playbook
        from fjord.providers.baremetal import BareMetalProvider

        bmc = props.get("bmc")
        if not isinstance(bmc, Mapping):
            return BatchOutcome(
                (), (), error="power: off without the BMCs (no bare-metal layer): nothing to do it with"
            )
        access = {**bmc, "password": props.get(BMC_PASSWORD) or ""}
        metal = BareMetalProvider()
        states = metal.power_states(access, list(batch))
        on = tuple(h for h in batch if states.get(h) != "Off")
        unknown = tuple(h for h in on if states.get(h) is None)  # a BMC that did not answer: not touched
        drained: tuple[str, ...] = ()
        failed: tuple[str, ...] = ()
        unreachable: tuple[str, ...] = ()
        todo = [h for h in on if h not in unknown]
        if todo:
            result = run_playbook(
                DRAIN_PLAYBOOK,
                json.loads(unpack_inventory(props["inventory"])),
                site=props["site"],
                limit=todo,
                extra_vars={"fjord_drain_reason": "power-off"},
                settings=AnsibleSettings(),
            )
            if result.crashed:
                return BatchOutcome(tuple(h for h in batch if h not in on), (), error=result.error)
            failed, unreachable = tuple(result.failed_hosts), tuple(result.unreachable_hosts)
            drained = tuple(h for h in todo if h in result.hosts and h not in failed and h not in unreachable)
        errors = metal.power_off_nodes(access, list(drained)) if drained else {}
        done = tuple(h for h in batch if (h not in on) or (h in drained and h not in errors))
        return BatchOutcome(done, failed + tuple(errors), unreachable + unknown)

    def _run(self, props: Mapping[str, Any], batch: Batch, reboot: bool) -> BatchOutcome:
        # Imported here: the program only registers the resource; running the playbook is the provider's job.
        from fjord.adapters.ansible import AnsibleSettings, run_playbook

        rollout = props.get("rollout") or {}
        result = run_playbook(
            str(rollout.get("playbook") or ROLLOUT_PLAYBOOK),
            json.loads(unpack_inventory(props["inventory"])),
            site=props["site"],
            limit=batch,
            extra_vars={
                # fjord cut the batch: the play takes it whole (one serial batch).
                "fjord_upgrade_batch_percent": 100,
                "fjord_upgrade_max_fail_percentage": _policy(props).max_fail_percentage,
                # Staged BIOS settings take effect at a boot: the drained node is rebooted.
                "fjord_upgrade_reboot_always": reboot,
            },
            settings=AnsibleSettings(),
        )
        unreachable = tuple(result.unreachable_hosts)
        failed = tuple(result.failed_hosts)
        done = tuple(h for h in batch if h in result.hosts and h not in failed and h not in unreachable)
        return BatchOutcome(done, failed, unreachable, error=result.error if result.crashed else "")


def _outputs(
    props: Mapping[str, Any], result: RolloutResult | None, reboot: bool, boot_wait: bool = False
) -> dict[str, Any]:
    """The resource's outputs: its inputs (the hosts now in service among them) and what the rollout left."""
    return dict(props) | {
        "batches": [list(b) for b in result.batches] if result else [],
        "powered_off": [],
        "failed_hosts": list(result.failed) if result else [],
        "unreachable_hosts": list(result.unreachable) if result else [],
        "rollout_pending": list(result.pending) if result else [],
        "reboot_pending": bool(result and result.pending and reboot),
        "boot_wait_pending": bool(result and result.pending and boot_wait),
        "stopped": result.stopped if result else "",
        "hosts_run": sum(len(b) for b in result.batches) if result else 0,
    }


@dataclass(frozen=True)
class ClusterRolloutArgs:
    site: str
    cluster: str
    inventory: Inventory
    """The cluster's inventory, every unit's hosts (fjord.hosts.inventory.cluster_inventory)."""
    hosts: tuple[str, ...]
    """The cluster's host names in its order (unit by unit, node by node): the order of the batches."""
    versions: dict[str, Any]
    """What reaches hosts in service only through this rollout (software versions, BIOS settings, GPU stack owners)."""
    playbooks_digest: str
    upgrade: Upgrade
    """The cluster's `upgrade` policy."""
    playbook: str = ROLLOUT_PLAYBOOK
    bmc: dict[str, Any] | None = None
    """The cluster's BMCs as `fjord.providers.baremetal.unit_props` gives them (None: not kept by fjord); their
    declared `power` rolls through this rollout."""


class ClusterRollout(dyn.Resource, module="hosts", name="ClusterRollout"):
    """A cluster's drained, batched rollout. Outputs: `rollout_pending`, `failed_hosts`, `stopped`, `batches`."""

    hosts_run: pulumi.Output[int]
    """Pulumi reads this annotation to return the engine's number as an int (a float otherwise)."""
    if TYPE_CHECKING:  # For type checkers only: Pulumi re-reads class annotations for every instance.
        rollout_pending: pulumi.Output[list[str]]

    def __init__(self, name: str, args: ClusterRolloutArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "site": args.site,
            "cluster": args.cluster,
            # Packed as HostConfig's is (a Slurm cluster's variables are large): the engine copies every input.
            "inventory": pack_inventory(args.inventory.to_json()),
            "hosts": list(args.hosts),
            "versions": args.versions,
            "playbooks_digest": args.playbooks_digest,
            "rollout": {
                "playbook": args.playbook,
                "batch_percent": args.upgrade.batch_percent,
                "max_fail_percentage": args.upgrade.max_fail_percentage,
            },
            "batches": None,
            "failed_hosts": None,
            "unreachable_hosts": None,
            "rollout_pending": None,
            "reboot_pending": None,
            "boot_wait_pending": None,
            "powered_off": None,
            "stopped": None,
            "hosts_run": None,
        }
        if args.bmc is not None:
            props |= {
                "power": args.bmc["power"],
                "bmc": {k: args.bmc[k] for k in BMC_ACCESS},
                BMC_PASSWORD: args.bmc["password"],
            }
        secret = pulumi.ResourceOptions(additional_secret_outputs=[BMC_PASSWORD])
        super().__init__(ClusterRolloutProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))


__all__ = ["ROLLOUT_PLAYBOOK", "ClusterRollout", "ClusterRolloutArgs", "ClusterRolloutProvider", "Due", "due"]
