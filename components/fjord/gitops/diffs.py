"""The policy's view of what a change of the spec does to a site's nodes: `fjord diff --json`'s document (issue
26, fjord.change.diff) turned into the blast radius rule's input. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fjord.policy.rules import Change


def change_from_diff(doc: Mapping[str, Any]) -> Change:
    """The blast radius rule's input from a `fjord diff --json` document."""
    totals = doc.get("totals", {})
    return Change(
        base_nodes=sum(int(c.get("nodes_before", 0)) for c in doc.get("clusters", [])),
        added=int(totals.get("added", 0)),
        removed=int(totals.get("removed", 0)),
        restarted=int(totals.get("restarted", 0)),
        moved=tuple((m["node"], m["field"], str(m["before"]), str(m["after"])) for m in doc.get("moves", [])),
    )
