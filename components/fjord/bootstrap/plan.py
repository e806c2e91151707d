"""A new site's bootstrap as data: the phase DAG, the node lifecycle and what a run (or a resumed run) still
has to do. Pure: no I/O; `fjord.bootstrap.runner` does the work through the adapters and persists the
`BootstrapState` this module defines in the site's own object store.

Phases (each needs the ones before it):

    state -> bare-metal -> hosts -> scheduler -> acceptance -> handover

Node lifecycle (one state per node, persisted with the reason of a failure):

    registered -> inspected -> provisioned -> configured -> accepted -> in_service
    any of them -> failed (reason, phase, and the last good state, which a resumed run continues from)

A phase that works on nodes (bare-metal, hosts, acceptance) takes each node from below its target state to
it; nodes already there are left alone, so a rerun with nothing to do touches no node, and a resumed run
redoes neither a finished phase nor a finished node.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

NodeStatus = Literal["registered", "inspected", "provisioned", "configured", "accepted", "in_service", "failed"]
PhaseStatus = Literal["pending", "running", "done", "failed", "blocked", "skipped"]
RunStatus = Literal["running", "done", "failed"]

LIFECYCLE: tuple[NodeStatus, ...] = (
    "registered",
    "inspected",
    "provisioned",
    "configured",
    "accepted",
    "in_service",
)
"""The good states in order; `failed` is off the line (see `NodeState.last_good`)."""
RANK = {s: i for i, s in enumerate(LIFECYCLE)}
SCHEMA = 1


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    needs: tuple[str, ...]
    target: NodeStatus | None
    """The state this phase brings each node to; None for a site-wide phase."""


PHASES: tuple[Phase, ...] = (
    Phase("state", "state backend and secrets", (), None),
    Phase("bare-metal", "BMC inventory, firmware and BIOS check, boot to the OS image", ("state",), "provisioned"),
    Phase("hosts", "host configuration", ("bare-metal",), "configured"),
    Phase("scheduler", "scheduler control plane", ("hosts",), None),
    Phase("acceptance", "acceptance gate, then into service", ("scheduler",), "in_service"),
    Phase("handover", "hand-over report", ("acceptance",), None),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


class PlanError(ValueError):
    """A selection or a transition that is not allowed; the message says what is."""


def topological(phases: Sequence[Phase]) -> list[Phase]:
    """The phases in an order where each comes after everything it needs; rejects unknown needs and cycles."""
    by_name = {p.name: p for p in phases}
    for p in phases:
        unknown = [n for n in p.needs if n not in by_name]
        if unknown:
            raise PlanError(f"phase {p.name!r} needs {unknown}, which are not phases; allowed: {list(by_name)}")
    done: list[Phase] = []
    seen: set[str] = set()
    visiting: list[str] = []

    def visit(p: Phase) -> None:
        if p.name in seen:
            return
        if p.name in visiting:
            raise PlanError(f"phases form a cycle: {' -> '.join([*visiting[visiting.index(p.name) :], p.name])}")
        visiting.append(p.name)
        for n in p.needs:
            visit(by_name[n])
        visiting.pop()
        seen.add(p.name)
        done.append(p)

    for p in phases:
        visit(p)
    return done


def _phase(name: str, option: str) -> str:
    if name not in PHASE_NAMES:
        raise PlanError(f"{option}: {name!r} is not a phase; allowed: {', '.join(PHASE_NAMES)}")
    return name


def select(
    only: Iterable[str] = (), from_: str | None = None, until: str | None = None, phases: Sequence[Phase] = PHASES
) -> list[Phase]:
    """The phases a run works on: `only` these, or the DAG order from `from_` to `until` (both included)."""
    order = topological(phases)
    names = [p.name for p in order]
    only = list(dict.fromkeys(only))
    if only and (from_ or until):
        raise PlanError("--only: give it alone, or --from/--until; allowed: --only, or --from and/or --until")
    if only:
        wanted = {_phase(n, "--only") for n in only}
        return [p for p in order if p.name in wanted]
    start = names.index(_phase(from_, "--from")) if from_ else 0
    end = names.index(_phase(until, "--until")) if until else len(names) - 1
    if start > end:
        raise PlanError(f"--from {from_} comes after --until {until}; allowed: a --from at or before --until")
    return order[start : end + 1]


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NodeState:
    """One node's place in the lifecycle; `failed` keeps the reason, the phase and the last good state."""

    status: NodeStatus = "registered"
    last_good: NodeStatus = "registered"
    phase: str | None = None
    reason: str | None = None
    updated: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    """What the phases learnt (BMC inventory, firmware, evidence keys): for the hand-over report."""

    @property
    def rank(self) -> int:
        """Where the node stands on the lifecycle: its state's, or for a failed node its last good state's."""
        return RANK[self.last_good]


def advance(node: NodeState, to: NodeStatus, phase: str, **facts: Any) -> NodeState:
    """The node one step on: to the next state of the lifecycle, or to `failed` (use `fail`). A node that
    failed continues from its last good state. Anything else is a PlanError."""
    if to == "failed":
        raise PlanError("use fail() to fail a node, with its reason")
    here = node.last_good
    if RANK[to] != RANK[here] + 1:
        allowed = LIFECYCLE[RANK[here] + 1] if RANK[here] + 1 < len(LIFECYCLE) else "(none: in service)"
        raise PlanError(f"a node cannot go from {node.status} to {to}; allowed: {allowed}")
    return NodeState(to, to, phase, None, now(), {**node.facts, **facts})


def fail(node: NodeState, phase: str, reason: str) -> NodeState:
    """The node failed in `phase` for `reason`; it keeps its last good state to continue from."""
    if not reason:
        raise PlanError("a failed node needs its reason")
    return replace(node, status="failed", phase=phase, reason=reason, updated=now())


@dataclass(frozen=True)
class PhaseRecord:
    status: PhaseStatus = "pending"
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    detail: str = ""
    attempts: int = 0


@dataclass(frozen=True)
class BootstrapState:
    """Everything a run persists: the run, each phase's record and each node's state."""

    site: str
    run_id: str
    status: RunStatus
    selected: tuple[str, ...]
    phases: Mapping[str, PhaseRecord]
    nodes: Mapping[str, NodeState]
    started: str = ""
    runs: tuple[str, ...] = ()
    """Earlier runs of this site, oldest first (their ids)."""

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["schema"] = SCHEMA
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BootstrapState:
        if doc.get("schema") != SCHEMA:
            raise PlanError(f"bootstrap state schema {doc.get('schema')!r}; allowed: {SCHEMA}")
        return cls(
            site=doc["site"],
            run_id=doc["run_id"],
            status=doc["status"],
            selected=tuple(doc["selected"]),
            phases={k: PhaseRecord(**v) for k, v in doc["phases"].items()},
            nodes={k: NodeState(**v) for k, v in doc["nodes"].items()},
            started=doc.get("started", ""),
            runs=tuple(doc.get("runs", ())),
        )


def new_run(
    site: str,
    run_id: str,
    nodes: Iterable[str],
    selected: Sequence[Phase],
    previous: BootstrapState | None = None,
    resume: bool = False,
) -> BootstrapState:
    """The state a run starts from.

    - No previous state: every node registered, every phase pending.
    - `resume`: the previous run's id, phase records and nodes; its finished phases stay done up to the first
      that is not (failed, blocked, or running when the process died): that one and all after it are pending
      again. Nothing to resume is an error.
    - Otherwise a new run over the previous nodes' states (a node in service stays in service), which is
      refused while the previous run is unfinished: it must be resumed (or its state removed) first.
    Nodes the site no longer has are dropped; new nodes are registered.
    """
    names = list(dict.fromkeys(nodes))
    chosen = tuple(p.name for p in selected)
    if resume:
        if previous is None:
            raise PlanError(f"--resume: site {site} has no bootstrap to resume; allowed: a run without --resume")
        if previous.status == "done" and previous.selected == chosen:
            raise PlanError(
                f"--resume: run {previous.run_id} of site {site} finished; allowed: a new run without --resume"
            )
        # Finished phases stay done up to the first one that is not (or that a node failed in); it and every phase
        # after it run again (a node retried there must still go through them; for the nodes already past, they
        # have nothing to do).
        phases: dict[str, PhaseRecord] = {}
        redo = False
        for p in PHASES:
            record = previous.phases.get(p.name, PhaseRecord())
            failed_here = any(n.status == "failed" and n.phase == p.name for n in previous.nodes.values())
            redo = redo or record.status != "done" or failed_here
            phases[p.name] = replace(record, status="pending") if redo else record
        old = previous.nodes
        return BootstrapState(
            site,
            previous.run_id,
            "running",
            chosen,
            phases,
            {n: old.get(n, NodeState(updated=now())) for n in names},
            previous.started,
            previous.runs,
        )
    if previous is not None and previous.status != "done":
        stopped = next(
            (n for n in PHASE_NAMES if _unfinished(previous.phases.get(n))),
            None,
        )
        where = f"phase {stopped} {previous.phases[stopped].status}" if stopped else "unfinished"
        raise PlanError(
            f"run {previous.run_id} of site {site} did not finish ({where}); allowed: --resume to continue it"
        )
    old = previous.nodes if previous is not None else {}
    runs = (*previous.runs, previous.run_id) if previous is not None else ()
    return BootstrapState(
        site,
        run_id,
        "running",
        chosen,
        {p.name: PhaseRecord() for p in PHASES},
        {n: old.get(n, NodeState(updated=now())) for n in names},
        now(),
        runs,
    )


def _unfinished(record: PhaseRecord | None) -> bool:
    return record is not None and record.status in ("failed", "blocked", "running")


def todo(state: BootstrapState, phase: Phase) -> list[str]:
    """The nodes `phase` still has to work on: those below its target state. A node that failed in an
    earlier phase waits for that phase (it is not carried past it); one that failed in this phase is tried
    again. Site-wide phases work on no node."""
    if phase.target is None:
        return []
    target = RANK[phase.target]
    order = {p.name: i for i, p in enumerate(PHASES)}
    here = order[phase.name]
    out: list[str] = []
    for name, node in state.nodes.items():
        if node.rank >= target:
            continue
        if node.status == "failed" and node.phase is not None and order.get(node.phase, here) < here:
            continue
        if node.rank < RANK[_entry(phase)]:
            continue  # not yet through the phases before this one (e.g. a node added after bare metal ran)
        out.append(name)
    return out


def _entry(phase: Phase) -> NodeStatus:
    """The state a node must be in (at least) for `phase` to take it."""
    entry: dict[str, NodeStatus] = {"bare-metal": "registered", "hosts": "provisioned", "acceptance": "configured"}
    return entry.get(phase.name, "registered")


def counts(state: BootstrapState) -> dict[str, int]:
    """Nodes per lifecycle state (failed counted as failed)."""
    out: dict[str, int] = dict.fromkeys((*LIFECYCLE, "failed"), 0)
    for n in state.nodes.values():
        out[n.status] += 1
    return out


def finished(state: BootstrapState) -> RunStatus:
    """The run's status from its phases: failed when a selected phase failed or is blocked, or a node failed."""
    selected = [state.phases[n] for n in state.selected]
    if any(r.status in ("failed", "blocked") for r in selected) or any(
        n.status == "failed" for n in state.nodes.values()
    ):
        return "failed"
    if all(r.status in ("done", "skipped") for r in selected):
        return "done"
    return "running"
