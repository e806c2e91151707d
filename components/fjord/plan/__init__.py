"""The offline plan: the real Pulumi program under Pulumi's mock runtime, one process per stack."""

from fjord.plan.runner import MAX_RESOURCES_PER_STACK, PlanError, StackPlan, plan_stacks

__all__ = ["MAX_RESOURCES_PER_STACK", "PlanError", "StackPlan", "plan_stacks"]
