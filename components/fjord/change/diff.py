"""`fjord diff`'s logic: what going from one spec (and allocation record) to another does to the running site.

Both sides are sized (`fjord.sizing`), the new one from its allocation record (or, without one, from the old
side's record, as `fjord alloc` would extend it). Per cluster the result says which nodes are added, removed,
restarted (drained and restarted in batches of the cluster's `upgrade.batch_percent`, because a setting that
needs a restart changed) and moved (a rack or an address that differs for a node on both sides: must be none).

Verdicts, and the exit codes of `fjord diff`:
- `safe` (0): nothing running is disturbed (no change, or only nodes added and settings that need no restart);
- `disruptive` (3): nodes are removed, or drained and restarted in batches; allowed, worth a human's look;
- `rejected` (1): a node or rack would move, a cluster is removed without `fjord:allowRemove`, the new allocation
  record is missing or not current, or the new spec breaks a limit.

Pure: no Pulumi, no git, no files; the CLI reads both sides and prints the result as a table, JSON or Markdown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fjord.sizing.alloc import Allocation, differences
from fjord.sizing.site import Node, SiteSize, size_site
from fjord.spec.errors import SiteError
from fjord.spec.models import Site

SCHEMA_VERSION = 1
EXIT_CODES = {"safe": 0, "disruptive": 3, "rejected": 1}

RESTART_SITE_FIELDS: Mapping[str, str] = {
    "bmc.bios": "BIOS settings (staged on the BMC, applied by a drained restart)",
    "software.os": "OS release",
    "software.driver_branch": "GPU driver branch",
    "software.driver_source": "GPU driver source",
    "software.cuda": "CUDA release",
    "software.kubernetes": "Kubernetes release",
    "bmc.power": "declared power state",
}
"""Site fields whose change drains and restarts every existing node (rolling, per cluster, in batches)."""
RESTART_CLUSTER_FIELDS: Mapping[str, str] = {
    "gpu_stack.driver": "owner of the GPU driver",
    "gpu_stack.container_toolkit": "owner of the container toolkit",
}
"""Cluster fields whose change drains and restarts the cluster's existing nodes."""
POWER: Mapping[str, str] = {
    "off": "power off: each node in service drained, then powered off, in batches (a node that cannot be drained"
    " stays on)",
    "on": "power on: the nodes the rollout powered off are powered on, validated and returned, in batches",
}
"""What a change of `bmc.power` does, by the value it changes to (fjord.providers.rollout)."""
NEW_NODES_ONLY = ("bmc.boot", "bmc.image_url")
"""How a node is first installed (PXE or virtual media): applies to nodes added from now on, never re-armed."""
NODE_FIELDS = ("hall", "rack", "bmc", "management", "storage", "compute")


@dataclass(frozen=True)
class Side:
    """One side of a diff: where it came from, its validated spec (None: the stack did not exist), its
    allocation record (None: none committed) and the clusters its `fjord:allowRemove` lists."""

    source: str
    site: Site | None
    record: Allocation | None
    allow_remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Move:
    node: str
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class Span:
    """Consecutive nodes of one scalable unit."""

    unit: str
    first: str
    last: str
    count: int


@dataclass(frozen=True)
class ClusterDiff:
    name: str
    change: str
    """added, removed, changed or unchanged."""
    nodes_before: int
    nodes_after: int
    added: tuple[Span, ...]
    removed: tuple[Span, ...]
    restarted: int
    """Existing nodes drained and restarted by the rollout (0 when nothing needs a restart)."""
    reasons: tuple[str, ...]
    batch_percent: int
    batch_nodes: int
    """Nodes drained at once: `upgrade.batch_percent` of the cluster, at least one."""
    max_fail_percentage: int
    moved: tuple[Move, ...]

    @property
    def added_nodes(self) -> int:
        return sum(s.count for s in self.added)

    @property
    def removed_nodes(self) -> int:
        return sum(s.count for s in self.removed)


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class SiteDiff:
    stack: str
    base: str
    head: str
    clusters: tuple[ClusterDiff, ...]
    problems: tuple[str, ...]
    """Why the change is rejected (empty: it is not)."""
    changes: tuple[Change, ...]
    """Every spec field that differs, with both values."""
    notes: tuple[str, ...] = field(default=())

    @property
    def moves(self) -> list[Move]:
        return [m for c in self.clusters for m in c.moved]

    @property
    def rejected(self) -> bool:
        return bool(self.problems or self.moves)

    @property
    def disruptive(self) -> bool:
        return any(c.restarted or c.removed for c in self.clusters)

    @property
    def verdict(self) -> str:
        return "rejected" if self.rejected else "disruptive" if self.disruptive else "safe"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf values by dotted path; lists of named items keyed by name (`clusters[h200].gpus`), so that
    reordering a list changes nothing."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(value, list | tuple):
        if value and all(isinstance(v, Mapping) and "name" in v for v in value):
            out = {}
            for v in value:
                out.update(flatten({k: x for k, x in v.items() if k != "name"}, f"{path}[{v['name']}]"))
                out[f"{path}[{v['name']}]"] = "present"
            return out
        return {path: list(value)}
    return {path: value}


def spec_changes(old: Site | None, new: Site) -> list[Change]:
    a = flatten(old.model_dump(mode="json")) if old is not None else {}
    b = flatten(new.model_dump(mode="json"))
    return [Change(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _spans(nodes: Iterable[Node]) -> tuple[Span, ...]:
    spans: list[Span] = []
    for n in nodes:
        unit = f"{n.cluster}-su{n.scalable_unit:03d}"
        if spans and spans[-1].unit == unit:
            s = spans[-1]
            spans[-1] = Span(unit, s.first, n.name, s.count + 1)
        else:
            spans.append(Span(unit, n.name, n.name, 1))
    return tuple(spans)


def _node_view(n: Node) -> dict[str, str]:
    return {
        "hall": n.hall,
        "rack": n.rack,
        "bmc": n.bmc,
        "management": n.management,
        "storage": n.storage,
        "compute": ",".join(n.compute),
    }


def _restart_reasons(changes: Sequence[Change], cluster: str) -> list[str]:
    reasons: list[str] = []
    for c in changes:
        for f, why in RESTART_SITE_FIELDS.items():
            if c.path == f or c.path.startswith(f + "."):
                reasons.append(f"{f}: {POWER.get(str(c.after), why) if f == 'bmc.power' else why}")
        prefix = f"clusters[{cluster}]."
        if c.path.startswith(prefix) and c.path[len(prefix) :] in RESTART_CLUSTER_FIELDS:
            field_ = c.path[len(prefix) :]
            reasons.append(f"{field_}: {RESTART_CLUSTER_FIELDS[field_]}")
    return list(dict.fromkeys(reasons))


def diff_sites(stack: str, old: Side, new: Side) -> SiteDiff:
    """The diff from `old` to `new` (see the module docstring). Raises SiteError only for an old side that
    cannot be sized; a new side that cannot be is a rejected diff naming each problem."""
    if new.site is None:
        raise ValueError("the new side needs a site")
    problems: list[str] = []
    notes: list[str] = []
    old_size: SiteSize | None = None
    if old.site is not None:
        try:
            old_size = size_site(old.site, old.record)
        except SiteError as exc:
            raise SiteError(exc.problems, old.source) from None
    changes = spec_changes(old.site, new.site)
    record = new.record if new.record is not None else (old_size.alloc if old_size is not None else None)
    try:
        new_size = size_site(new.site, record)
    except SiteError as exc:
        problems += [f"{new.source}: {line}" for line in exc.lines()]
        return SiteDiff(stack, old.source, new.source, (), tuple(problems), tuple(changes), tuple(notes))
    if new.record is None:
        problems.append(
            f"{new.source}: no allocation record; allowed: run `fjord alloc {stack}` and commit the record it writes"
        )
    elif new.record != new_size.alloc:
        stale = "; ".join(differences(new.record, new_size.alloc))
        problems.append(
            f"{new.source}: the allocation record is not current ({stale}); allowed: run `fjord alloc {stack}`"
        )
    for c in changes:
        if any(c.path == f for f in NEW_NODES_ONLY):
            notes.append(
                f"{c.path}: {c.before} -> {c.after} applies to nodes added from now on; no running node reboots"
            )

    before = {c.name: c for c in old_size.clusters} if old_size is not None else {}
    after = {c.name: c for c in new_size.clusters}
    old_nodes = {n.name: n for n in old_size.hosts()} if old_size is not None else {}
    clusters: list[ClusterDiff] = []
    for name in [*after, *(n for n in before if n not in after)]:
        a, b = before.get(name), after.get(name)
        spec = new.site.cluster(name) if b is not None else None
        new_nodes = [n for u in b.units for n in u.nodes()] if b is not None else []
        kept_names = {n.name for n in new_nodes}
        was = [n for n in old_nodes.values() if n.cluster == name]
        added = [n for n in new_nodes if n.name not in old_nodes]
        removed = [n for n in was if n.name not in kept_names]
        moved = [
            Move(n.name, f, old_view[f], new_view[f])
            for n in new_nodes
            if n.name in old_nodes
            for old_view, new_view in [(_node_view(old_nodes[n.name]), _node_view(n))]
            for f in NODE_FIELDS
            if old_view[f] != new_view[f]
        ]
        existing = len(new_nodes) - len(added)
        reasons = _restart_reasons(changes, name) if a is not None and b is not None else []
        restarted = existing if reasons else 0
        pct = spec.upgrade.batch_percent if spec is not None else 0
        if b is None:
            kind = "removed"
            if name not in new.allow_remove:
                problems.append(
                    f"cluster {name!r} is removed from the spec: that destroys its {len(was):,} nodes;"
                    " allowed: list it in the stack's fjord:allowRemove to mean it, or put it back"
                )
        elif a is None:
            kind = "added"
        elif added or removed or restarted or moved or any(c.path.startswith(f"clusters[{name}]") for c in changes):
            kind = "changed"
        else:
            kind = "unchanged"
        clusters.append(
            ClusterDiff(
                name=name,
                change=kind,
                nodes_before=len(was),
                nodes_after=len(new_nodes),
                added=_spans(added),
                removed=_spans(removed),
                restarted=restarted,
                reasons=tuple(reasons),
                batch_percent=pct,
                batch_nodes=spec.upgrade.batch_nodes(existing) if restarted and spec is not None else 0,
                max_fail_percentage=spec.upgrade.max_fail_percentage if spec is not None else 0,
                moved=tuple(moved),
            )
        )
    return SiteDiff(stack, old.source, new.source, tuple(clusters), tuple(problems), tuple(changes), tuple(notes))


def to_json(d: SiteDiff) -> dict[str, Any]:
    """The diff as plain data: fixed keys in a fixed order, for pipelines (schema_version says which)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "stack": d.stack,
        "base": d.base,
        "head": d.head,
        "verdict": d.verdict,
        "exit_code": d.exit_code,
        "totals": {
            "added": sum(c.added_nodes for c in d.clusters),
            "removed": sum(c.removed_nodes for c in d.clusters),
            "restarted": sum(c.restarted for c in d.clusters),
            "moved": len(d.moves),
        },
        "clusters": [
            {
                "name": c.name,
                "change": c.change,
                "nodes_before": c.nodes_before,
                "nodes_after": c.nodes_after,
                "added": c.added_nodes,
                "removed": c.removed_nodes,
                "restarted": c.restarted,
                "moved": len(c.moved),
                "reasons": list(c.reasons),
                "batch_percent": c.batch_percent,
                "batch_nodes": c.batch_nodes,
                "max_fail_percentage": c.max_fail_percentage,
                "added_nodes": [_span_json(s) for s in c.added],
                "removed_nodes": [_span_json(s) for s in c.removed],
            }
            for c in d.clusters
        ],
        "moves": [{"node": m.node, "field": m.field, "before": m.before, "after": m.after} for m in d.moves],
        "problems": list(d.problems),
        "changes": [{"path": c.path, "before": c.before, "after": c.after} for c in d.changes],
        "notes": list(d.notes),
    }


def _span_json(s: Span) -> dict[str, Any]:
    return {"unit": s.unit, "first": s.first, "last": s.last, "count": s.count}


MAX_MARKDOWN_ROWS = 50


def _md(value: Any) -> str:
    """A value in a Markdown table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(d: SiteDiff) -> str:
    """The diff as a pull request comment."""
    label = {"safe": "safe", "disruptive": "disruptive (drains or removes nodes)", "rejected": "**rejected**"}
    lines = [
        f"### fjord diff `{d.stack}`: {label[d.verdict]} (exit {d.exit_code})",
        "",
        f"`{_md(d.base)}` -> `{_md(d.head)}`",
        "",
        "| cluster | change | nodes | added | removed | restarted | moved | batch | why |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in d.clusters:
        batch = (
            f"{c.batch_nodes} ({c.batch_percent} %), stop past {c.max_fail_percentage} % failed" if c.restarted else ""
        )
        lines.append(
            f"| {_md(c.name)} | {c.change} | {c.nodes_before:,} -> {c.nodes_after:,} | {c.added_nodes:,} |"
            f" {c.removed_nodes:,} | {c.restarted:,} | {len(c.moved):,} | {batch} | {_md('; '.join(c.reasons))} |"
        )
    if d.problems:
        lines += ["", "**Rejected:**", ""] + [f"- {_md(p)}" for p in d.problems]
    if d.moves:
        lines += ["", f"**Moves ({len(d.moves):,}, must be none):**", "", "| node | field | before | after |"]
        lines.append("|---|---|---|---|")
        lines += [f"| {m.node} | {m.field} | {_md(m.before)} | {_md(m.after)} |" for m in d.moves[:MAX_MARKDOWN_ROWS]]
    if d.changes:
        lines += ["", "<details><summary>Spec changes</summary>", "", "| field | before | after |", "|---|---|---|"]
        lines += [f"| `{_md(c.path)}` | {_md(c.before)} | {_md(c.after)} |" for c in d.changes[:MAX_MARKDOWN_ROWS]]
        if len(d.changes) > MAX_MARKDOWN_ROWS:
            lines.append(f"| ... | {len(d.changes) - MAX_MARKDOWN_ROWS} more | |")
        lines += ["", "</details>"]
    if d.notes:
        lines += [""] + [f"- {_md(n)}" for n in d.notes]
    return "\n".join(lines)
