"""Run the plan worker for each stack in its own process (the mock root stack is per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_RESOURCES_PER_STACK = 2000
"""Scale rule: Pulumi slows down badly past this many resources in one stack."""

EXIT_REJECTED = 3


class PlanError(RuntimeError):
    """A stack could not be planned: its site was rejected, or the program failed."""

    def __init__(self, stack: str, lines: Sequence[str], source: str = "") -> None:
        self.stack = stack
        self.lines = list(lines)
        self.source = source or f"stack {stack}"
        super().__init__(f"{self.source}: " + "; ".join(self.lines))


@dataclass(frozen=True)
class StackPlan:
    stack: str
    data: dict[str, Any]

    @property
    def resources(self) -> int:
        return int(self.data["resources"])

    @property
    def over_budget(self) -> bool:
        return self.resources > MAX_RESOURCES_PER_STACK

    @property
    def policy_failed(self) -> list[str]:
        """The mandatory policy rules this stack's site fails (none when the plan ran no policy)."""
        return list(self.data.get("policy", {}).get("mandatory_failed", []))


def _plan_one(stack: str, stacks_dir: Path | None, policy_config: Path | None = None) -> StackPlan:
    cmd = [sys.executable, "-m", "fjord.plan.worker", stack]
    if stacks_dir is not None:
        cmd.append(str(stacks_dir))
    if policy_config is not None:
        cmd.append(f"--policy-config={policy_config}")
    env = dict(os.environ, PYTHONWARNINGS=os.environ.get("PYTHONWARNINGS", "ignore"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode == EXIT_REJECTED:
        rejected = json.loads(proc.stdout)
        raise PlanError(stack, rejected["problems"], rejected["source"])
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise PlanError(stack, [f"the Pulumi program failed (exit {proc.returncode}): {tail[0]}"])
    return StackPlan(stack, json.loads(proc.stdout))


def plan_stacks(
    stacks: Sequence[str],
    stacks_dir: Path | None = None,
    jobs: int | None = None,
    on_done: Callable[[str], None] | None = None,
    policy_config: Path | None = None,
) -> list[StackPlan]:
    """Plan every stack, in parallel processes; raise the first PlanError in stack order.

    Each plan carries fjord's policy results (`data["policy"]`), with the settings in `policy_config`, else the
    repository's `policy/config.yaml` beside the stacks folder, else the defaults."""
    workers = max(1, min(len(stacks), jobs or os.cpu_count() or 1))

    def task(stack: str) -> StackPlan | PlanError:
        try:
            return _plan_one(stack, stacks_dir, policy_config)
        except PlanError as exc:
            return exc
        finally:
            if on_done is not None:
                on_done(stack)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(task, stacks))
    for r in results:
        if isinstance(r, PlanError):
            raise r
    return [r for r in results if isinstance(r, StackPlan)]
