#!/usr/bin/env bash
# The scheduled drift check of one stack (docs/gitops.md): reports, never writes state.
#   ci/gitops/drift.sh <stack> [<records folder>]
# With the engine: locks and pending operations (explained), then a refresh that only previews
# (`fjord refresh --preview-only`, else `fjord preview --expect-no-changes`, else a preview whose JSON must show
# no change: `fjord gitops drift --preview`). Without it: the stack now against
# the last apply's record (`fjord gitops drift`). Exit 0 clean; 3 drift, a lock or a pending operation.
set -euo pipefail
stack=$1
records=${2:-fjord-records}

if [ -n "${PULUMI_BACKEND_URL:-}" ] && fjord refresh --help >/dev/null 2>&1; then
  fjord gitops state "$stack" --backend "$PULUMI_BACKEND_URL"
  if fjord refresh --help 2>/dev/null | grep -q -- '--preview-only'; then
    fjord refresh "$stack" --preview-only
  elif fjord preview --help 2>/dev/null | grep -q -- '--expect-no-changes'; then
    fjord preview "$stack" --expect-no-changes
  else
    # Neither: a plain preview (the spec against the state; it writes nothing), which must change nothing.
    fjord preview "$stack" --json >"$records/$stack.preview.json" || true
    fjord gitops drift "$stack" --preview "$records/$stack.preview.json"
  fi
elif [ -f "$records/$stack.applied.json" ]; then
  fjord gitops drift "$stack" --record "$records/$stack.applied.json"
else
  echo "drift $stack: no record of an apply in $records; nothing to compare with" >&2
  exit 3
fi
