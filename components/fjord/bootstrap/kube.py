"""The Kubernetes control plane as bootstrap's scheduler phase checks it. Pure: the API's node list in, what it
says about the cluster's nodes out.

A node the gate has not let in yet must carry the acceptance taint (`fjord.io/acceptance`, which k8s_node has
the kubelet register with), so that it takes no work before acceptance; a node registered without it would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ACCEPTANCE_TAINT = "fjord.io/acceptance"


@dataclass(frozen=True)
class Registration:
    registered: tuple[str, ...]
    tainted: tuple[str, ...]
    """Registered nodes carrying the acceptance taint."""
    missing: tuple[str, ...]
    """Nodes the API does not have (yet): their kubelet registers them tainted when it joins."""
    untainted_pending: tuple[str, ...]
    """Nodes not accepted yet that the API has without the acceptance taint: they could take work."""

    def line(self) -> str:
        total = len(self.registered) + len(self.missing)
        text = f"{len(self.registered)} of {total} nodes registered, {len(self.tainted)} with the acceptance taint"
        if self.untainted_pending:
            text += f"; without it before acceptance: {', '.join(self.untainted_pending)}"
        return text


def registration(node_list: Mapping[str, Any], nodes: Iterable[str], accepted: Iterable[str]) -> Registration:
    """What `kubectl get nodes -o json` (`node_list`) says about `nodes`; `accepted`: those the gate let in."""
    items = {str(i.get("metadata", {}).get("name")): i for i in node_list.get("items") or [] if isinstance(i, Mapping)}
    done = set(accepted)
    registered: list[str] = []
    tainted: list[str] = []
    missing: list[str] = []
    open_: list[str] = []
    for n in nodes:
        item = items.get(n)
        if item is None:
            missing.append(n)
            continue
        registered.append(n)
        taints = (item.get("spec") or {}).get("taints") or []
        if any(isinstance(t, Mapping) and t.get("key") == ACCEPTANCE_TAINT for t in taints):
            tainted.append(n)
        elif n not in done:
            open_.append(n)
    return Registration(tuple(registered), tuple(tainted), tuple(missing), tuple(open_))
