#!/usr/bin/env bash
# Apply one stack after a merge (docs/gitops.md). The pipelines run one job per stack at a time (GitHub
# `concurrency`, GitLab `resource_group`) and core stacks before the rest.
#   ci/gitops/apply.sh <stack> <ref before the merge> [<records folder>]
# 1. the gate again on main (validate, diff against the ref before the merge, policy): exit 1 or 6 stops here;
# 2. with the engine: locks and pending operations on the stack's state (exit 3, explained), then `fjord up`;
#    without it: the offline plan, recorded (`fjord gitops record`) for the drift check: nothing is changed.
set -euo pipefail
stack=$1
before=$2
records=${3:-fjord-records}
mkdir -p "$records"

fjord gitops check "$stack" --base "$before"

if [ -n "${PULUMI_BACKEND_URL:-}" ] && fjord up --help >/dev/null 2>&1; then
  fjord gitops state "$stack" --backend "$PULUMI_BACKEND_URL"
  # With fjord's policy pack: a mandatory violation stops the apply before anything changes (exit 6).
  fjord up "$stack" --policy-pack policy
else
  echo "apply $stack: no Pulumi engine here (PULUMI_BACKEND_URL unset or no \`fjord up\`): offline plan, recorded"
  fjord plan "$stack" --json >"$records/$stack.plan.json"
  fjord gitops record "$stack" --plan "$records/$stack.plan.json" --out "$records/$stack.applied.json"
fi
