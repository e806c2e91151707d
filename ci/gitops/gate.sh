#!/usr/bin/env bash
# Fail the job with the gate's exit code that ci/gitops/review.sh recorded (0 pass, 1 rejected site, 6 policy).
#   ci/gitops/gate.sh <stack> [<out folder>]
set -euo pipefail
stack=$1
out=${2:-fjord-out/$stack}
code=$(cat "$out/gate" 2>/dev/null || echo 1)
if [ "$code" != 0 ]; then
  echo "gate $stack: failed (exit $code); the pull request comment says why" >&2
fi
exit "$code"
