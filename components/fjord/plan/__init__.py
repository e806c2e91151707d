"""The offline plan: the real Pulumi program under Pulumi's mock runtime, one process per stack.

The runner's names are loaded on first use: each plan worker (`python -m fjord.plan.worker`) imports this
package, and needs none of the runner's imports (Pulumi's automation API among them, ~40 ms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fjord.plan.runner import MAX_RESOURCES_PER_STACK, PlanError, StackPlan, plan_stacks

__all__ = ["MAX_RESOURCES_PER_STACK", "PlanError", "StackPlan", "plan_stacks"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fjord.plan import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
