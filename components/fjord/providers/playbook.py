"""HostConfig: a Pulumi dynamic resource that runs a playbook on a group of hosts when its inputs change.

Inputs: the playbook, the group's inventory (one string, so Pulumi stores one value rather than one per host:
its canonical JSON, zlib-compressed and base64-encoded, see `pack_inventory`), its digest, the software
versions it carries (shown in diffs) and a digest of the playbooks folder. `diff` compares the digests and
versions, so `pulumi up` reruns the playbook exactly when the hosts, their variables, the versions or the roles
change. `create`/`update` run it through the Ansible adapter and
record which hosts failed or were unreachable; a recorded failure makes the next `diff` report a change, and
an `update` with unchanged inputs reruns only on those hosts, so repeated `pulumi up` converges. A play
that crashes, or in which no host succeeded, fails the resource (Pulumi keeps the previous state).

Safe on a live site (docs/safe-change.md): a change that touches the GPU stack of hosts already in service (the
software versions, the BIOS settings, the roles themselves) never reruns site.yml on them. Those hosts go
through their cluster's drained rollout instead (`fjord.providers.rollout.ClusterRollout`, one per cluster,
which this resource waits for): batches of the cluster's `upgrade.batch_percent`, each host drained, changed,
rebooted where needed, validated and only then returned. Here, hosts new to the unit (not in service yet) get
site.yml, and a configuration-only change reruns site.yml on the unit's hosts except those the cluster's
rollout has not finished (`rollout_hosts_pending`, its output), which stay out of site.yml until it has.

The provider object holds no clients (Pulumi pickles it into the resource's inputs).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi.dynamic as dyn
import yaml

from fjord.adapters.playbooks import default_playbooks_dir
from fjord.hosts.inventory import Inventory, json_digest

TRIGGERS = ("playbook", "inventory_digest", "versions", "playbooks_digest", "tags")
"""Inputs whose change reruns the playbook (`tags` is absent unless the stack sets fjord:hostTags)."""
RETRY = ("failed_hosts", "unreachable_hosts", "drifted_hosts")
"""Outputs listing hosts the next update reruns the playbook on (failed, unreachable, or drifted at refresh)."""
ROLLING = ("versions", "playbooks_digest")
"""Inputs whose change reaches hosts in service only through the drained rollout, never through site.yml."""


class RolloutMoved(RuntimeError):
    """A HostConfig state from before the cluster's rollout (it rolled its own unit) with a rollout due."""


@dataclass(frozen=True)
class Run:
    """One playbook run an update makes: the playbook, the hosts it is limited to, its extra vars."""

    playbook: str
    limit: tuple[str, ...]
    extra_vars: dict[str, Any]


def update_runs(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[Run]:
    """What an update runs, and on which hosts (pure: see the module docstring). The hosts in service get
    version and role changes from their cluster's rollout (ClusterRollout), never from here."""
    hosts: list[str] = list(news.get("hosts") or [])
    known = olds.get("hosts")
    # A state from before hosts were recorded: every host counts as in service (never site.yml'd unasked).
    in_service = set(hosts) if known is None else set(known)
    new_hosts = tuple(h for h in hosts if h not in in_service)
    rolling = any(olds.get(k) != news.get(k) for k in ROLLING)
    if "rollout" in olds and (rolling or olds.get("rollout_pending")):
        # This unit rolled its own hosts before the rollout became the cluster's: a rollout due now would be
        # lost (the cluster's resource starts from the hosts as they are). Refuse rather than skip it.
        due = sorted(olds.get("rollout_pending") or []) or sorted(h for h in hosts if h in in_service)
        raise RolloutMoved(
            f"{news.get('group')}: its hosts in service are due a drained rollout ({', '.join(due[:5])}"
            f"{', ...' if len(due) > 5 else ''}) recorded by a fjord from before the rollout became per cluster;"
            " allowed: `pulumi up` once with the previous software versions and playbooks, then the change; or"
            " roll them by hand first: `fjord configure <stack> --playbook upgrade-gpu-stack.yml --limit <hosts>`"
        )
    held = set(news.get("rollout_hosts_pending") or [])
    if rolling:
        return [Run(str(news["playbook"]), new_hosts, {})] if new_hosts else []
    same = all(olds.get(k) == news.get(k) for k in TRIGGERS)
    retry = sorted({h for k in RETRY for h in olds.get(k) or [] if h in hosts and h not in held})
    if not same:
        # Same versions and roles: site.yml only converges configuration; it changes no driver on a host in service.
        limit = tuple(h for h in hosts if h not in held)
        return [Run(str(news["playbook"]), limit, {})] if limit else []
    if retry:
        return [Run(str(news["playbook"]), tuple(retry), {})]
    return []


def playbooks_digest(folder: Path | None = None) -> str:
    """SHA-256 over every file under the playbooks folder (names and contents): changes when a role does."""
    root = folder or default_playbooks_dir()
    h = hashlib.sha256()
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _tags_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "tags":
                yield from [value] if isinstance(value, str) else value if isinstance(value, list) else []
            else:
                yield from _tags_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _tags_in(item)


@functools.cache
def playbook_tags(root: Path) -> frozenset[str]:
    """Every tag the playbooks and roles under `root` carry (`always` included)."""
    tags: set[str] = set()
    for path in sorted(root.rglob("*.yml")):
        try:
            tags.update(str(t) for t in _tags_in(yaml.safe_load(path.read_text(encoding="utf-8"))))
        except yaml.YAMLError:
            continue  # not a document the tags can come from; Ansible reports it when it runs
    return frozenset(tags)


def check_tags(tags: Any, playbooks: Path | None = None) -> list[tuple[str, Any, str]]:
    """Problems with a `tags` input (fjord:hostTags) as (property, value, what is wrong and allowed): each must
    be a tag the playbooks carry."""
    if tags is None:
        return []
    root = playbooks or default_playbooks_dir()
    known = playbook_tags(root)
    allowed = f"tags of the playbooks in {root}: {', '.join(sorted(known - {'always'}))}"
    if not isinstance(tags, list) or not tags:
        return [("tags", tags, f"is no list of tags; allowed: a non-empty list of {allowed}")]
    return [
        (f"tags[{i}]", t, f"is no tag of the playbooks; allowed: {allowed}")
        for i, t in enumerate(tags)
        if t not in known
    ]


PACKED = "zlib+base64:"
"""Prefix of a packed inventory input (`pack_inventory`); an input without it is the plain JSON of older states."""


def pack_inventory(canonical: str) -> str:
    """The inventory input: the canonical JSON, zlib-compressed and base64-encoded, behind `PACKED`.

    A Slurm cluster's variables (its slurm.conf node and topology lines, the same on every node) are in every
    unit's inventory: ~76 KB per narvik unit, ~11 KB packed. The engine carries each input through every
    step (the program's registration, the provider's check, the events, the state, the CLI's own log), so
    the packed form is what keeps a preview of a large Slurm site within its budget (docs/performance.md).
    The digest stays that of the JSON (`json_digest`): packing changes no digest and reruns nothing."""
    return PACKED + base64.b64encode(zlib.compress(canonical.encode(), 6)).decode("ascii")


def unpack_inventory(value: str) -> str:
    """The inventory's JSON from the input: packed (`pack_inventory`) or, as states written before, plain.
    Raises ValueError for a packed value that does not decode."""
    if not value.startswith(PACKED):
        return value
    try:
        return zlib.decompress(base64.b64decode(value[len(PACKED) :], validate=True)).decode()
    except (binascii.Error, zlib.error, UnicodeDecodeError) as exc:
        raise ValueError(f"a packed inventory that does not decode ({exc})") from None


def check_inputs(news: dict[str, Any], playbooks: Path | None = None) -> list[tuple[str, str]]:
    """The problems with a HostConfig's inputs as (property, message), each naming the value and what is allowed."""
    problems: list[tuple[str, str]] = []
    for key in ("site", "group"):
        if not isinstance(news.get(key), str) or not news.get(key):
            problems.append((key, f"is {news.get(key)!r}; allowed: a non-empty name"))
    playbook = news.get("playbook")
    root = playbooks or default_playbooks_dir()
    if not isinstance(playbook, str) or not playbook.endswith((".yml", ".yaml")) or not (root / playbook).is_file():
        known = ", ".join(sorted(p.name for p in root.glob("*.yml"))) or "(none)"
        problems.append(("playbook", f"is {playbook!r}; allowed: a playbook in {root}: {known}"))
    inventory = news.get("inventory")
    if isinstance(inventory, str):
        try:
            inventory = unpack_inventory(inventory)
            doc = json.loads(inventory)
        except json.JSONDecodeError as exc:
            problems.append(("inventory", f"is not JSON ({exc.msg}); allowed: an inventory document"))
        except ValueError as exc:
            problems.append(("inventory", f"is {exc}; allowed: pack_inventory() of the inventory's JSON"))
        else:
            if not isinstance(doc, dict) or not doc:
                problems.append(("inventory", "is empty; allowed: an inventory document with the group's hosts"))
            elif news.get("inventory_digest") not in (None, json_digest(inventory)):
                problems.append(("inventory_digest", "does not match the inventory; allowed: json_digest(inventory)"))
    elif inventory is not None:  # unknown during a preview is fine; anything else is not
        problems.append(("inventory", f"is a {type(inventory).__name__}; allowed: the inventory's JSON as a string"))
    return problems + [(k, f"{v!r} {m}") for k, v, m in check_tags(news.get("tags"), playbooks)]


class HostConfigProvider(dyn.ResourceProvider):
    """Runs the playbook on create and update; diff compares versions and digests; read (refresh) runs it in
    check mode to find the hosts that drifted."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.CheckResult:
        return dyn.CheckResult(news, [dyn.CheckFailure(k, m) for k, m in check_inputs(news)])

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        """Refresh: run the playbook in check mode (`--check`, nothing changes on the hosts); a host on which a
        task would change something has drifted (a file edited behind fjord's back) and is listed in
        `drifted_hosts`, so the next `up` reruns the playbook on exactly those hosts. Without the inventory
        (state written before it was kept) the record is returned as it is."""
        from fjord.adapters.ansible import AnsibleSettings, run_playbook

        if not isinstance(props.get("inventory"), str):
            return dyn.ReadResult(id_, props)
        result = run_playbook(
            props["playbook"],
            json.loads(unpack_inventory(props["inventory"])),
            site=props["site"],
            tags=props.get("tags") or (),
            check=True,
            settings=AnsibleSettings(),
        )
        if result.crashed:
            raise RuntimeError(f"{props['playbook']} on {props['group']}: check mode crashed: {result.error}")
        drifted = sorted(h for h, r in result.hosts.items() if r.status == "changed")
        return dyn.ReadResult(
            id_,
            props
            | {
                "drifted_hosts": drifted,
                "unreachable_hosts": sorted(set(props.get("unreachable_hosts") or []) | set(result.unreachable_hosts)),
            },
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.DiffResult:
        changed = [k for k in TRIGGERS if olds.get(k) != news.get(k)]
        if any(olds.get(k) for k in RETRY):
            changed.append("failed_hosts")  # the last run or refresh left hosts behind: run again
        if "rollout" in olds:
            changed.append("rollout")  # a state from before the cluster's rollout: rewritten once (update_runs)
        return dyn.DiffResult(
            changes=bool(changed), replaces=[], stables=["site", "group"], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        outs = self._run(props, ())
        outs.pop("done_hosts")
        return dyn.CreateResult(id_=f"{props['site']}/{props['group']}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        runs = update_runs(olds, news)
        # The inventory stays in the outputs: refresh (`read`) runs the check against it.
        outs: dict[str, Any] = news | {
            "drifted_hosts": [],
            "failed_hosts": [],
            "unreachable_hosts": [],
            "hosts_run": 0,
            "changed": 0,
        }
        for run in runs:
            got = self._run(news, run.limit, run.playbook, run.extra_vars)
            outs["failed_hosts"] += got["failed_hosts"]
            outs["unreachable_hosts"] += got["unreachable_hosts"]
            outs["hosts_run"] += got["hosts_run"]
            outs["changed"] += got["changed"]
        return dyn.UpdateResult(outs=outs)

    def _run(
        self,
        props: dict[str, Any],
        limit: list[str] | tuple[str, ...],
        playbook: str | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        # Imported here: the program only registers the resource; running the playbook is the provider's job.
        from fjord.adapters.ansible import AnsibleSettings, run_playbook

        playbook = playbook or props["playbook"]
        result = run_playbook(
            playbook,
            json.loads(unpack_inventory(props["inventory"])),
            site=props["site"],
            limit=limit,
            # fjord:hostTags narrows the playbook the stack configures hosts with, never the drained rollout.
            tags=(props.get("tags") or ()) if playbook == props["playbook"] else (),
            extra_vars=extra_vars,
            settings=AnsibleSettings(),
        )
        where = f"{playbook} on {props['group']}"
        if result.crashed:
            raise RuntimeError(f"{where} crashed: {result.error}")
        bad = result.failed_hosts + result.unreachable_hosts
        if result.hosts and len(bad) == len(result.hosts):
            details = "; ".join(
                f"{h}: " + (", ".join(f"{f.task}: {f.message}" for f in result.hosts[h].failures) or "failed")
                for h in bad
            )
            raise RuntimeError(f"{where}: no host succeeded: {details}")
        # The inventory stays in the outputs: refresh (`read`) runs the check against it.
        return props | {
            "drifted_hosts": [],
            "failed_hosts": result.failed_hosts,
            "unreachable_hosts": result.unreachable_hosts,
            "done_hosts": [h for h in result.hosts if h not in bad],
            "hosts_run": len(result.hosts),
            "changed": result.changed,
        }


@dataclass(frozen=True)
class HostConfigArgs:
    site: str
    """The site's name (the fact cache is kept per site)."""
    group: str
    """The inventory group the playbook runs on, e.g. su_h100_000."""
    inventory: Inventory
    """The group's inventory (fjord.hosts.unit_inventory)."""
    versions: dict[str, Any]
    """The software versions the hosts get, shown in `pulumi preview` diffs."""
    playbook: str = "site.yml"
    playbooks_digest: str = ""
    """Digest of the playbooks folder (playbooks_digest()): a role change rolls through the hosts in service."""
    hosts: tuple[str, ...] = ()
    """The group's host names: hosts new to the group get `playbook`, hosts in service only the rollout."""
    rollout_hosts_pending: pulumi.Input[list[str]] | None = None
    """Hosts the cluster's rollout has not finished (ClusterRollout's `rollout_pending`): never given site.yml."""
    tags: tuple[str, ...] = ()
    """Run only these role tags of `playbook` (fjord:hostTags); empty: every role."""


class HostConfig(dyn.Resource, module="hosts", name="HostConfig"):
    """A group of hosts configured by a playbook; reruns when the inventory, versions or roles change."""

    changed: pulumi.Output[int]
    """Pulumi reads this annotation to return the engine's number as an int (a float otherwise)."""
    if TYPE_CHECKING:  # For type checkers only: Pulumi re-reads class annotations for every instance.
        failed_hosts: pulumi.Output[list[str]]
        unreachable_hosts: pulumi.Output[list[str]]

    def __init__(self, name: str, args: HostConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        inventory = args.inventory.to_json()  # encoded once: the input and its digest
        props: dict[str, Any] = {
            "site": args.site,
            "group": args.group,
            "playbook": args.playbook,
            "inventory": pack_inventory(inventory),
            "inventory_digest": json_digest(inventory),
            "versions": args.versions,
            "playbooks_digest": args.playbooks_digest,
            "hosts": list(args.hosts),
            "rollout_hosts_pending": args.rollout_hosts_pending or [],
            "failed_hosts": None,
            "unreachable_hosts": None,
            "drifted_hosts": None,
            "hosts_run": None,
            "changed": None,
        }
        if args.tags:  # absent otherwise: a stack without fjord:hostTags keeps the inputs (and diff) it had
            props["tags"] = list(args.tags)
        super().__init__(HostConfigProvider(), name, props, opts)
