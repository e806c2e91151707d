"""What a change of the spec does to a site's nodes, as the JSON document `fjord diff --json` prints, and the
policy's view of it (`change_from_diff`): pure.

`node_diff` is the stand-in used while `fjord diff` (issue 26) is not on this branch: the same document's core
keys (verdict, totals, per-cluster counts, moves), from the two sides' sized inventories: nodes compared by
name, a node whose rack or any address differs is moved, and every existing node of a cluster is restarted when
a setting that needs a restart changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fjord.policy.rules import Change
from fjord.sizing.site import Node, SiteSize
from fjord.spec.models import Site

RESTART_SITE_FIELDS = ("bmc", "software")
"""Site sections whose change reaches every node: BIOS and boot settings, OS, driver, CUDA, Kubernetes."""
RESTART_CLUSTER_FIELDS = ("gpu_stack",)
NODE_FIELDS = ("hall", "rack", "bmc", "management", "storage", "compute")


def _view(n: Node) -> dict[str, str]:
    return {
        "hall": n.hall,
        "rack": n.rack,
        "bmc": n.bmc,
        "management": n.management,
        "storage": n.storage,
        "compute": ",".join(n.compute),
    }


def _restart_reasons(base: Site, head: Site, cluster: str) -> list[str]:
    reasons = [f for f in RESTART_SITE_FIELDS if getattr(base, f) != getattr(head, f)]
    names = {c.name for c in base.clusters}
    if cluster in names:
        before, after = base.cluster(cluster), head.cluster(cluster)
        reasons += [
            f"clusters[{cluster}].{f}" for f in RESTART_CLUSTER_FIELDS if getattr(before, f) != getattr(after, f)
        ]
    return reasons


def node_diff(
    stack: str, base: tuple[Site, SiteSize] | None, head: tuple[Site, SiteSize], base_ref: str, head_ref: str
) -> dict[str, Any]:
    """The diff document from `base` (None: the stack is new) to `head`."""
    head_site, head_size = head
    old = {n.name: n for n in base[1].hosts()} if base is not None else {}
    clusters: list[dict[str, Any]] = []
    moves: list[dict[str, str]] = []
    new_names: set[str] = set()
    for c in head_size.clusters:
        nodes = [n for u in c.units for n in u.nodes()]
        new_names |= {n.name for n in nodes}
        was = [n for n in old.values() if n.cluster == c.name]
        added = [n for n in nodes if n.name not in old]
        kept = {n.name for n in nodes}
        removed = [n for n in was if n.name not in kept]
        moved = [
            {"node": n.name, "field": f, "before": ov[f], "after": nv[f]}
            for n in nodes
            if n.name in old
            for ov, nv in [(_view(old[n.name]), _view(n))]
            for f in NODE_FIELDS
            if ov[f] != nv[f]
        ]
        reasons = _restart_reasons(base[0], head_site, c.name) if base is not None and was else []
        restarted = len(nodes) - len(added) if reasons else 0
        changed = added or removed or moved or restarted
        kind = "added" if not was and base is not None else "changed" if changed else "unchanged"
        clusters.append(
            {
                "name": c.name,
                "change": "added" if base is None else kind,
                "nodes_before": len(was),
                "nodes_after": len(nodes),
                "added": len(added),
                "removed": len(removed),
                "restarted": restarted,
                "moved": len(moved),
                "reasons": reasons,
            }
        )
        moves += moved
    for name in sorted({n.cluster for n in old.values()} - {c.name for c in head_size.clusters}):
        was = [n for n in old.values() if n.cluster == name]
        clusters.append(
            {
                "name": name,
                "change": "removed",
                "nodes_before": len(was),
                "nodes_after": 0,
                "added": 0,
                "removed": len(was),
                "restarted": 0,
                "moved": 0,
                "reasons": [],
            }
        )
    totals = {k: sum(c[k] for c in clusters) for k in ("added", "removed", "restarted")}
    totals["moved"] = len(moves)
    verdict = "rejected" if moves else "disruptive" if totals["removed"] or totals["restarted"] else "safe"
    return {
        "stack": stack,
        "base": base_ref,
        "head": head_ref,
        "verdict": verdict,
        "totals": totals,
        "clusters": clusters,
        "moves": moves,
        "problems": [],
        "notes": [],
        "source": "fjord.gitops.diffs (stand-in for fjord diff)",
    }


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
