"""GitLab CI child pipelines, one job per stack a change touches: pure (the stacks in, the pipeline as data out).

GitLab has no matrix over a list computed at run time; the parent pipeline (`.gitlab-ci.yml`) runs
`fjord gitops gitlab-pipeline`, which writes this child pipeline, and triggers it. Every apply and drift job of a
stack holds the resource group `fjord-stack-<stack>`: one run per stack at a time, merges queued in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fjord.gitops.stacks import is_core

Mode = Literal["review", "apply", "drift"]
RESOURCE_GROUP = "fjord-stack-{stack}"
IMAGE = "python:3.11-slim-bookworm"
SETUP = [
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends git >/dev/null",
    "pip install --quiet --editable '.[policy]'",  # the policy pack's pulumi-policy (fjord up --policy-pack)
]


def _records_cache(stack: str, policy: str) -> dict[str, Any]:
    return {"key": f"fjord-records-{stack}", "paths": ["fjord-records/"], "policy": policy}


def child_pipeline(mode: Mode, stacks: Sequence[str], base: str, image: str = IMAGE) -> dict[str, Any]:
    """The child pipeline for `mode` over `stacks` (in apply order), comparing with git ref `base`."""
    pipeline: dict[str, Any] = {
        "default": {"image": image, "before_script": list(SETUP)},
        "variables": {"GIT_DEPTH": "0", "FJORD_BASE": base},
    }
    if not stacks:
        pipeline["stages"] = ["nothing"]
        pipeline["nothing"] = {"stage": "nothing", "before_script": [], "script": ["echo 'no stack is touched'"]}
        return pipeline
    if mode == "review":
        pipeline["stages"] = ["review"]
        for s in stacks:
            pipeline[f"review:{s}"] = {
                "stage": "review",
                "interruptible": True,
                "variables": {"STACK": s},
                "script": [
                    'git fetch --quiet origin "${FJORD_BASE#origin/}"',
                    'ci/gitops/review.sh "$STACK" "$FJORD_BASE"',
                    'fjord gitops publish "$STACK" --body "fjord-out/$STACK/comment.md" --number "$FJORD_MR_IID"',
                    'ci/gitops/gate.sh "$STACK"',
                ],
                "artifacts": {"when": "always", "paths": [f"fjord-out/{s}/"], "expire_in": "30 days"},
            }
    elif mode == "apply":
        pipeline["stages"] = ["apply-core", "apply"]
        for s in stacks:
            pipeline[f"apply:{s}"] = {
                "stage": "apply-core" if is_core(s) else "apply",
                "resource_group": RESOURCE_GROUP.format(stack=s),
                "environment": {"name": s},
                "variables": {"STACK": s},
                "cache": _records_cache(s, "pull-push"),
                "script": ['ci/gitops/apply.sh "$STACK" "$FJORD_BASE"'],
            }
    else:
        pipeline["stages"] = ["drift"]
        for s in stacks:
            pipeline[f"drift:{s}"] = {
                "stage": "drift",
                "resource_group": RESOURCE_GROUP.format(stack=s),
                "variables": {"STACK": s},
                "cache": _records_cache(s, "pull"),
                "script": ['ci/gitops/drift.sh "$STACK"'],
            }
    return pipeline
