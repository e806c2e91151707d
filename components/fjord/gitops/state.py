"""A stack's Pulumi state, read for what blocks the next run: locks and pending operations, each explained with
what to do (pure: the backend's objects in, findings out; fjord.adapters.state_backend reads them).

Pulumi's self-managed backends (file://, s3://) keep a lock object per running update under
`.pulumi/locks/organization/<project>/<stack>/<id>.json` (who, where, pid, when) and the stack's checkpoint under
`.pulumi/stacks/<project>/<stack>.json`, whose `checkpoint.latest.pending_operations` lists what a run started
and never finished (it died, or its machine did).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

STALE_AFTER = dt.timedelta(hours=2)
"""A lock older than this is taken as left behind by a run that died (the longest apply of a big site is ~1 h)."""


@dataclass(frozen=True)
class Finding:
    kind: Literal["lock", "stale-lock", "pending-operation"]
    what: str
    fix: str

    def line(self) -> str:
        return f"{self.kind}: {self.what}; {self.fix}"


def _when(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def explain_state(
    stack: str,
    locks: Sequence[tuple[str, Mapping[str, Any]]],
    checkpoint: Mapping[str, Any] | None,
    now: dt.datetime,
    stale_after: dt.timedelta = STALE_AFTER,
) -> list[Finding]:
    """Findings for `stack`: each lock (key, content) and each pending operation of the checkpoint."""
    found: list[Finding] = []
    for key, lock in locks:
        who = f"{lock.get('username', '?')}@{lock.get('hostname', '?')} (pid {lock.get('pid', '?')})"
        since = _when(lock.get("timestamp"))
        age = now - since if since else None
        when = f"since {since.isoformat(timespec='seconds')}" if since else "at an unknown time"
        if age is not None and age <= stale_after:
            found.append(
                Finding(
                    "lock",
                    f"stack {stack} is locked by {who} {when} ({key})",
                    "a run is probably in progress: wait for it (the pipelines run one job per stack at a time)",
                )
            )
        else:
            found.append(
                Finding(
                    "stale-lock",
                    f"stack {stack} is locked by {who} {when}, longer than {stale_after} ({key})",
                    f"the run that took it most likely died; make sure no `pulumi` or `fjord up` for {stack} still runs"
                    f" on {lock.get('hostname', '?')}, then remove the lock: `pulumi cancel --stack {stack}` or delete"
                    f" {key} from the backend",
                )
            )
    latest = ((checkpoint or {}).get("checkpoint") or {}).get("latest") or {}
    for op in latest.get("pending_operations") or []:
        urn = (op.get("resource") or {}).get("urn", "?")
        kind = op.get("type", "?")
        fix = (
            f"the engine does not know whether it exists; look at the real thing, then `pulumi refresh --stack {stack}"
            " --clear-pending-creates` (it was never made) or `--import-pending-creates` (it was)"
            if kind == "creating"
            else f"a run stopped in the middle; `pulumi refresh --stack {stack}` reads the resource's real state and"
            " clears the operation"
        )
        found.append(Finding("pending-operation", f"{urn} was left '{kind}' by an interrupted run", fix))
    return found


def blocking(findings: Sequence[Finding]) -> bool:
    """Whether the findings stop an apply (any of them: a live lock too, the pipeline then waits and retries)."""
    return bool(findings)
