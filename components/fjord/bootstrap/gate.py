"""The acceptance gate: does a node's report let it into service? Pure: a report (JSON from the node's
acceptance script) and the checks the spec requires in, a verdict out.

The rule: every required check must be in the report and must have passed. A required check that failed,
that was skipped (no GPU, no PyTorch, a tool missing) or that is not in the report at all fails the node,
each with its reason. Checks the spec does not require are recorded with the verdict and never decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fjord.spec.models import ACCEPTANCE_CHECKS


@dataclass(frozen=True)
class Decision:
    check: str
    required: bool
    status: str
    """passed | failed | skipped | missing: what the node reported."""
    reason: str
    """Why a required check does not pass (empty when it passed or is not required)."""


@dataclass(frozen=True)
class Verdict:
    node: str
    accepted: bool
    decisions: tuple[Decision, ...]

    @property
    def failures(self) -> list[Decision]:
        return [d for d in self.decisions if d.required and d.status != "passed"]

    def reason(self) -> str:
        """One line: why the node stays out of service ('' when accepted)."""
        return "; ".join(f"{d.check}: {d.reason}" for d in self.failures)

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "accepted": self.accepted,
            "reason": self.reason(),
            "decisions": [
                {"check": d.check, "required": d.required, "status": d.status, "reason": d.reason}
                for d in self.decisions
            ],
        }


def _shown(value: object, width: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def evaluate(node: str, report: object, required: Sequence[str]) -> Verdict:
    """The gate's verdict on one node's `report` (the parsed JSON) for the `required` checks."""
    unknown = [c for c in required if c not in ACCEPTANCE_CHECKS]
    if unknown:
        allowed = ", ".join(ACCEPTANCE_CHECKS)
        raise ValueError(f"required checks {unknown} are not acceptance checks; allowed: {allowed}")
    checks: dict[str, Mapping[str, Any]] = {}
    if isinstance(report, Mapping) and isinstance(report.get("checks"), list):
        for c in report["checks"]:
            if isinstance(c, Mapping) and isinstance(c.get("check"), str):
                checks.setdefault(c["check"], c)
    elif required:
        reason = "the node's acceptance report is not a JSON object with a list of checks"
        return Verdict(node, False, tuple(Decision(c, True, "missing", reason) for c in required))
    decisions: list[Decision] = []
    wanted = set(required)
    for name in (*ACCEPTANCE_CHECKS, *(n for n in checks if n not in ACCEPTANCE_CHECKS)):
        c = checks.get(name)
        is_required = name in wanted
        if c is None:
            if is_required:
                decisions.append(Decision(name, True, "missing", "required, and the report does not have it"))
            continue
        status = str(c.get("status"))
        reason = ""
        if is_required and status != "passed":
            why = c.get("actual") if status == "skipped" else {"expected": c.get("expected"), "actual": c.get("actual")}
            if status == "skipped":
                reason = f"required, but skipped: {_shown(why)}"
            elif status == "failed":
                reason = f"failed: expected {_shown(c.get('expected'))}, got {_shown(c.get('actual'))}"
            else:
                reason = f"required, with an unknown status {status!r}: {_shown(why)}"
        decisions.append(Decision(name, is_required, status, reason))
    accepted = all(d.status == "passed" for d in decisions if d.required)
    return Verdict(node, accepted, tuple(decisions))
