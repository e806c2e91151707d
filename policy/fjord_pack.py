"""fjord's CrossGuard policies: each rule of `fjord.policy` wrapped as a Pulumi `StackValidationPolicy` with its
severity as the enforcement level. `__main__.py` serves them as the policy pack (`--policy-pack policy`).

The rules read the site, not the engine's resource properties: a stack validation gets the stack's resources,
whose URNs name the stack (`urn:pulumi:<stack>::<project>::...`); the wrapper reads that stack's file and
allocation record from the stacks folder (`../stacks` beside this folder, or $FJORD_STACKS_DIR), validates and
sizes it exactly as the program did a moment before, and runs the same function `fjord plan` runs. Settings come
from `config.yaml` beside this file. The blast radius needs what the change does: the `fjord diff --json` of the
change, from the policy config `{"blast-radius": {"diff": "<file>"}}` or $FJORD_DIFF_JSON; without one the rule
is not applicable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, Policy, ReportViolation, StackValidationArgs, StackValidationPolicy

from fjord.gitops.diffs import change_from_diff
from fjord.policy import RULES, PolicyInput, Rule, load_settings, policy_input
from fjord.sizing.alloc import read as read_alloc
from fjord.sizing.site import validate_site
from fjord.spec.load import read_stack

HERE = Path(__file__).resolve().parent
LEVEL = {"advisory": EnforcementLevel.ADVISORY, "mandatory": EnforcementLevel.MANDATORY}


def stacks_folder() -> Path:
    env = os.environ.get("FJORD_STACKS_DIR")
    return Path(env) if env else HERE.parent / "stacks"


def stack_of(urn: str) -> str:
    """The stack a URN belongs to: `urn:pulumi:<stack>::<project>::<type>::<name>`."""
    head = urn.split("::", 1)[0]
    if not head.startswith("urn:pulumi:"):
        raise ValueError(f"not a Pulumi URN: {urn}")
    return head[len("urn:pulumi:") :]


def stack_input(args: StackValidationArgs, diff_file: str | None = None) -> PolicyInput | None:
    """The rules' input for the stack being previewed; None for a stack without resources."""
    if not args.resources:
        return None
    stack = stack_of(args.resources[0].urn)
    folder = stacks_folder()
    cfg = read_stack(stack, folder)
    site, size = validate_site(cfg.site, f"stack {stack}", read_alloc(stack, folder))
    settings = load_settings(HERE / "config.yaml")
    change = None
    if diff_file:
        change = change_from_diff(json.loads(Path(diff_file).read_text(encoding="utf-8")))
    return policy_input(stack, site, size, cfg, change=change, settings=settings)


def _root_urn(args: StackValidationArgs) -> str | None:
    return next((r.urn for r in args.resources if r.resource_type == "pulumi:pulumi:Stack"), None)


def crossguard(rule: Rule) -> StackValidationPolicy:
    """`rule` as a stack validation policy: one violation per finding, the field path and what is allowed."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        config: dict[str, Any] = dict(args.get_config() or {})
        diff_file = (config.get("diff") or os.environ.get("FJORD_DIFF_JSON")) if rule.name == "blast-radius" else None
        if rule.name == "blast-radius" and not diff_file:
            args.not_applicable("no `fjord diff --json` of the change (policy config 'diff' or $FJORD_DIFF_JSON)")
        inp = stack_input(args, diff_file)
        if inp is None:
            args.not_applicable("the stack has no resources")
            return
        for v in rule(inp):
            report_violation(f"{v.path}: {v.message} (got {v.value})", _root_urn(args))

    return StackValidationPolicy(
        name=f"fjord-{rule.name}",
        description=rule.description,
        validate=validate,
        enforcement_level=LEVEL[rule.severity],
    )


def policies() -> list[Policy]:
    """Every rule of fjord.policy, as CrossGuard policies named `fjord-<rule>`."""
    settings = load_settings(HERE / "config.yaml")
    out: list[Policy] = []
    for rule in RULES:
        level = settings.enforcement.get(rule.name, rule.severity)
        if level == "disabled":
            continue
        out.append(crossguard(Rule(rule.name, level, rule.description, rule.check)))
    return out
