#!/usr/bin/env bash
# Review one stack of a pull/merge request (docs/gitops.md): validate, diff, a preview through the Pulumi engine
# where it exists (PULUMI_BACKEND_URL set and `fjord preview` installed) or the offline plan, the policy gate,
# and the stack's comment. The GitHub and GitLab pipelines both run it; so do the tests.
#   ci/gitops/review.sh <stack> <base ref> [<out folder>]
# Writes <out>/comment.md (the comment body) and <out>/gate (the gate's exit code: 0 pass, 1 the site is
# rejected, 6 a mandatory policy rule failed). Exits 0 when it could review the stack, whatever the gate says, so
# that the comment is published either way; ci/gitops/gate.sh then fails the job.
set -euo pipefail
stack=$1
base=$2
out=${3:-fjord-out/$stack}
mkdir -p "$out"
rm -f "$out"/{validate.txt,diff.json,preview.json,plan.json,check.json,comment.md,gate}

args=()
if fjord validate "$stack" >"$out/validate.txt" 2>&1; then
  cat "$out/validate.txt"
else
  cat "$out/validate.txt" >&2
fi

# The diff: `fjord diff` (nodes added, removed, restarted, moved) where this fjord has it; otherwise
# `fjord gitops` computes its own from the two sides' sized inventories.
if fjord diff --help >/dev/null 2>&1; then
  fjord diff "$stack" --base "$base" --json >"$out/diff.json" || true
  if [ -s "$out/diff.json" ]; then args+=(--diff "$out/diff.json"); fi
fi

# The preview: the real engine where there is one, with fjord's policy pack; else the offline plan.
if [ -n "${PULUMI_BACKEND_URL:-}" ] && fjord preview --help >/dev/null 2>&1; then
  # fjord's policy pack through the engine (exit 6 on a mandatory violation; the gate below decides). Its
  # blast-radius policy reads the diff from FJORD_DIFF_JSON (policy/fjord_pack.py).
  FJORD_DIFF_JSON="$(pwd)/$out/diff.json" fjord preview "$stack" --json --policy-pack policy >"$out/preview.json" || true
  args+=(--preview "$out/preview.json")
else
  # Exit 6 (policy) and 4 (over budget) still print the plan; the gate below decides.
  fjord plan "$stack" --json >"$out/plan.json" || true
  if [ -s "$out/plan.json" ]; then args+=(--plan "$out/plan.json"); fi
fi

fjord gitops comment "$stack" --base "$base" "${args[@]}" --out "$out/comment.md"

set +e
check_args=()
if [ -s "$out/diff.json" ]; then check_args+=(--diff "$out/diff.json"); fi
fjord gitops check "$stack" --base "$base" "${check_args[@]}" --json >"$out/check.json"
echo $? >"$out/gate"
set -e
echo "review $stack: gate exit $(cat "$out/gate"), comment in $out/comment.md"
