"""Policy as code: fjord's guardrails as pure functions over the validated site, its sizing and its platform data.

Each rule is a `Rule` (name, severity, what it checks) whose `check` takes a `PolicyInput` and returns the
`Violation`s it finds. The same functions run offline in `fjord plan` and `fjord gitops check`, and through the
Pulumi engine as the CrossGuard pack in the repository's `policy/` folder (`--policy-pack policy`). Pure: no
Pulumi, boto3, ansible-runner or Redfish (import-linter checks it). docs/policy.md lists the rules.
"""

from __future__ import annotations

from fjord.policy.rules import (
    ADVISORY,
    MANDATORY,
    RULES,
    Change,
    PolicyInput,
    PolicyReport,
    PolicySettings,
    Rule,
    RuleResult,
    Violation,
    evaluate,
    load_settings,
    policy_input,
    rule,
)

__all__ = [
    "ADVISORY",
    "MANDATORY",
    "RULES",
    "Change",
    "PolicyInput",
    "PolicyReport",
    "PolicySettings",
    "Rule",
    "RuleResult",
    "Violation",
    "evaluate",
    "load_settings",
    "policy_input",
    "rule",
]
