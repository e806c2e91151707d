#!/usr/bin/env bash
# The scheduled drift check of one stack (docs/gitops.md): reports, never writes state.
#   ci/gitops/drift.sh <stack> [<records folder>]
# With the engine: locks and pending operations (explained), then two checks that write nothing:
#   `fjord refresh --preview-only`: what the BMCs and hosts really have against the state (a node powered off
#   behind fjord's back, a file changed on a host);
#   `fjord preview --expect-no-changes`: the spec on main against the state (a merge that was never applied).
# Without it: the stack now against the last apply's record (`fjord gitops drift`).
# Exit 0 clean; 5 drift; 3 the check could not be made (a lock, a pending operation, the engine or a BMC failed).
set -euo pipefail
stack=$1
records=${2:-fjord-records}

if [ -n "${PULUMI_BACKEND_URL:-}" ] && fjord refresh --help >/dev/null 2>&1; then
  fjord gitops state "$stack" --backend "$PULUMI_BACKEND_URL"
  set +e
  fjord refresh "$stack" --preview-only
  machines=$?
  fjord preview "$stack" --expect-no-changes
  spec=$?
  set -e
  echo "drift $stack: the machines against the state: exit $machines; the spec against the state: exit $spec"
  for code in "$machines" "$spec"; do
    if [ "$code" != 0 ] && [ "$code" != 5 ]; then exit "$code"; fi
  done
  if [ "$machines" = 5 ] || [ "$spec" = 5 ]; then exit 5; fi
elif [ -f "$records/$stack.applied.json" ]; then
  fjord gitops drift "$stack" --record "$records/$stack.applied.json"
else
  echo "drift $stack: no record of an apply in $records; nothing to compare with" >&2
  exit 3
fi
