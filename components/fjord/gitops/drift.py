"""The offline pipeline's record of what an apply was asked to make, and the drift check against it: pure.

Without the Pulumi engine, `apply` cannot change anything; the pipeline records what main asked for at merge
(the stack's site, digested, and the offline plan's resources by type) and the scheduled drift check compares
the current main with that record: a merge that was never applied, or a stack changed outside the pipeline,
shows as drift. With the engine, the drift check is `fjord refresh --preview-only` instead, against the real
infrastructure; neither writes any state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

RECORD_VERSION = 1


def spec_digest(site: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    """SHA-256 of the stack's site and its other (non-secret, masked) config, keys sorted."""
    doc = json.dumps({"site": site, "config": dict(config)}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


def applied_record(stack: str, commit: str, digest: str, plan: Mapping[str, Any]) -> dict[str, Any]:
    """What an apply of `stack` at `commit` was asked to make."""
    return {
        "version": RECORD_VERSION,
        "stack": stack,
        "commit": commit,
        "spec_sha256": digest,
        "resources": int(plan.get("resources", 0)),
        "by_type": dict(sorted(plan.get("by_type", {}).items())),
    }


def drift(record: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How `current` (an applied_record of the stack now) differs from the last applied `record`; [] is clean."""
    found: list[str] = []
    if record.get("stack") != current.get("stack"):
        return [f"the record is of stack {record.get('stack')!r}, not {current.get('stack')!r}"]
    if record.get("spec_sha256") != current.get("spec_sha256"):
        found.append(
            f"the spec differs from the one applied at {str(record.get('commit', '?'))[:12]}: a merge was not applied,"
            " or the stack was changed outside the pipeline"
        )
    was, now = record.get("by_type", {}), current.get("by_type", {})
    for t in sorted(set(was) | set(now)):
        if was.get(t, 0) != now.get(t, 0):
            found.append(f"{t}: {was.get(t, 0)} applied, {now.get(t, 0)} asked for now")
    return found


def preview_drift(preview: Mapping[str, Any]) -> list[str]:
    """What an engine preview (`fjord preview --json`) would change; [] is clean. A failed preview is drift too:
    it could not show that nothing changes."""
    found = [f"{n} to {op}" for op, n in sorted(preview.get("changes", {}).items()) if n and op != "same"]
    found += [f"{s.get('op')} {s.get('urn')}" for s in preview.get("steps", []) if s.get("op") not in (None, "same")][
        :20
    ]
    if not preview.get("ok", True):
        found += [f"the preview failed: {e}" for e in preview.get("errors", [])] or ["the preview failed"]
    return found
