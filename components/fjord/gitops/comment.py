"""A stack's pull-request comment as Markdown, and how the pipelines find it again to edit it in place: pure.

The body starts with a hidden HTML marker naming the stack (`<!-- fjord-gitops stack=uk -->`); the pipelines
look for it among the pull request's comments (`find_comment`) and edit that comment on every push instead of
adding another one. The body holds no timestamp: a push that changes nothing for a stack leaves its comment as
it was, byte for byte (`fjord gitops publish` then skips the edit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MARKER_PREFIX = "<!-- fjord-gitops stack="
MAX_ROWS = 40
"""Rows a table in the comment shows before it says how many more there are."""


def marker(stack: str) -> str:
    return f"{MARKER_PREFIX}{stack} -->"


def find_comment(comments: Iterable[Mapping[str, Any]], stack: str) -> Mapping[str, Any] | None:
    """The first comment whose body starts with the stack's marker (forges' comment objects: `body` or `note`)."""
    tag = marker(stack)
    for c in comments:
        body = str(c.get("body") or c.get("note") or "")
        if body.lstrip().startswith(tag):
            return c
    return None


def cell(value: object) -> str:
    """A value in a Markdown table cell: pipes escaped, newlines flattened, never read as HTML."""
    return str(value).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        lines.append(f"| ... {len(rows) - MAX_ROWS} more |" + " |" * (len(header) - 1))
    return lines


@dataclass(frozen=True)
class StackReview:
    """Everything a stack's comment shows (each part as the command that made it printed it as data)."""

    stack: str
    base: str
    head: str
    validate: Sequence[str]
    """Problems that reject the head's site (empty: it validates); the first line is the summary when valid."""
    valid: bool
    diff: Mapping[str, Any] | None = None
    """`fjord diff --json` of the stack, base -> head (None: not computed, e.g. the site was rejected)."""
    preview: Mapping[str, Any] | None = None
    """The engine's `fjord preview --json`, where the engine ran."""
    plan: Mapping[str, Any] | None = None
    """The offline plan's `fjord plan --json` entry for the stack (when there is no engine preview)."""
    base_plan: Mapping[str, Any] | None = None
    """The base's offline plan entry, to show what the change adds and removes by type."""
    policy: Mapping[str, Any] | None = None
    """`PolicyReport.as_dict()`."""
    locks: Sequence[str] = ()
    """Stale locks or pending operations found on the stack's state, explained (see fjord.gitops.state)."""

    @property
    def blocked(self) -> bool:
        """Whether the pipeline's gate fails for this stack: invalid, moved nodes, or a mandatory rule failed."""
        if not self.valid:
            return True
        if self.diff is not None and self.diff.get("verdict") == "rejected":
            return True
        return bool(self.policy and self.policy.get("mandatory_failed"))


def _diff_lines(diff: Mapping[str, Any]) -> list[str]:
    totals = diff.get("totals", {})
    lines = [
        f"**{diff.get('verdict', '?')}**: {totals.get('added', 0):,} nodes added, {totals.get('removed', 0):,} removed,"
        f" {totals.get('restarted', 0):,} restarted (drained, in batches), {totals.get('moved', 0):,} moved",
        "",
    ]
    rows = [
        (
            c["name"],
            c.get("change", ""),
            f"{c.get('nodes_before', 0):,} -> {c.get('nodes_after', 0):,}",
            c.get("added", 0),
            c.get("removed", 0),
            c.get("restarted", 0),
            c.get("moved", 0),
            "; ".join(c.get("reasons", [])),
        )
        for c in diff.get("clusters", [])
    ]
    if rows:
        lines += _table(("cluster", "change", "nodes", "added", "removed", "restarted", "moved", "why"), rows)
    moves = diff.get("moves", [])
    if moves:
        lines += ["", "Nodes that would move (must be none):", ""]
        lines += _table(
            ("node", "field", "before", "after"), [(m["node"], m["field"], m["before"], m["after"]) for m in moves]
        )
    for p in diff.get("problems", []):
        lines.append(f"- problem: {cell(p)}")
    for n in diff.get("notes", []):
        lines.append(f"- note: {cell(n)}")
    return lines


def _preview_lines(preview: Mapping[str, Any]) -> list[str]:
    changes = preview.get("changes", {})
    counted = ", ".join(f"{n:,} to {op}" for op, n in changes.items() if n) or "no changes"
    lines = [f"**{'ok' if preview.get('ok', True) else 'failed'}**: {counted}", ""]
    by_type = preview.get("by_type", {})
    rows = [
        (t, *(ops.get(k, 0) for k in ("create", "update", "replace", "delete"))) for t, ops in sorted(by_type.items())
    ]
    if rows:
        lines += _table(("type", "create", "update", "replace", "delete"), rows)
    for e in preview.get("errors", []):
        lines.append(f"- error: {cell(e)}")
    for e in preview.get("left_behind", []):
        lines.append(f"- pending operation: {cell(e)}")
    for v in preview.get("policy", []):  # `fjord preview --policy-pack`: what the pack reported through the engine
        lines.append(
            f"- policy pack {cell(v.get('pack', '?'))}: {cell(v.get('policy', '?'))} ({v.get('level', '?')}):"
            f" {cell(v.get('message', ''))}"
        )
    return lines


def _plan_lines(plan: Mapping[str, Any], base: Mapping[str, Any] | None, budget: int) -> list[str]:
    now: dict[str, int] = dict(plan.get("by_type", {}))
    was: dict[str, int] = dict(base.get("by_type", {})) if base else {}
    total, before = int(plan.get("resources", 0)), int(base.get("resources", 0)) if base else None
    delta = "" if before is None else f" ({total - before:+,} against the base's {before:,})"
    lines = [f"**{total:,} resources**{delta}, budget {budget:,} per stack (offline plan: Pulumi's mock runtime)", ""]
    if base is None:
        lines += _table(("type", "resources"), [(t, f"{n:,}") for t, n in sorted(now.items())])
        return lines
    rows = [
        (t, was.get(t, 0), now.get(t, 0), f"{now.get(t, 0) - was.get(t, 0):+,}") for t in sorted(set(now) | set(was))
    ]
    changed = [r for r in rows if r[1] != r[2]]
    lines += (
        _table(("type", "base", "head", "change"), changed) if changed else ["The same resources by type as the base."]
    )
    return lines


def _policy_lines(policy: Mapping[str, Any]) -> list[str]:
    rows = []
    for r in policy.get("results", []):
        found = "; ".join(f"{v['path']}: {v['message']} (got {v['value']})" for v in r.get("violations", []))
        rows.append((r["rule"], r["severity"], r["status"], found or r.get("note", "")))
    return _table(("rule", "severity", "result", "findings"), rows)


def comment_body(review: StackReview, budget: int = 2000) -> str:
    """The stack's comment: a verdict line, then validate, diff, preview (engine or offline plan), policy."""
    r = review
    verdict = "blocked" if r.blocked else "ready to merge"
    why: list[str] = []
    if not r.valid:
        why.append("the site is rejected")
    if r.diff is not None and r.diff.get("verdict") == "rejected":
        why.append("the diff is rejected")
    if r.policy and r.policy.get("mandatory_failed"):
        why.append("mandatory policy failed: " + ", ".join(r.policy["mandatory_failed"]))
    lines = [
        marker(r.stack),
        f"### fjord: stack `{cell(r.stack)}`: {verdict}" + (f" ({'; '.join(why)})" if why else ""),
        "",
        f"`{cell(r.base)}` -> `{cell(r.head)}`",
        "",
        "#### Validate",
        "",
    ]
    if r.valid:
        lines.append(f"ok: {cell(r.validate[0])}" if r.validate else "ok")
    else:
        lines += [f"- {cell(p)}" for p in r.validate]
    if r.diff is not None:
        lines += ["", "#### Diff", "", *_diff_lines(r.diff)]
    if r.preview is not None:
        lines += ["", "#### Preview (Pulumi engine)", "", *_preview_lines(r.preview)]
    elif r.plan is not None:
        lines += ["", "#### Preview (offline plan)", "", *_plan_lines(r.plan, r.base_plan, budget)]
    if r.policy is not None:
        lines += ["", "#### Policy", "", *_policy_lines(r.policy)]
    if r.locks:
        lines += ["", "#### State", "", *(f"- {cell(x)}" for x in r.locks)]
    return "\n".join(lines).rstrip() + "\n"


def stack_of_comment(body: str) -> str | None:
    """The stack a comment body is about (its marker), else None."""
    m = re.match(r"\s*" + re.escape(MARKER_PREFIX) + r"(\S+) -->", body)
    return m.group(1) if m else None
