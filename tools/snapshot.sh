#!/usr/bin/env bash
# Golden outputs for a refactor: renders saved results and corpus traces through the CLI only
# (terminal text, JSON, HTML) into OUT, so two trees' outputs can be compared with `diff -r`.
#   tools/snapshot.sh INPUTS OUT    (INPUTS: saved results made once by the older tree)
# Only the CLI is used, so the script outlives any rename inside the package.
set -u
IN=$(realpath "$1"); OUT=$(realpath -m "$2"); HERE=$(cd "$(dirname "$0")/.." && pwd)
P="$HERE/.venv/bin/pinchpoint"; TRACES="$HERE/tests/data/traces"
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT" || exit 1
export COLUMNS=100 NO_COLOR=1 TERM=dumb
run() {  # NAME ARGS...: terminal text and exit status of one command
  local name=$1; shift
  "$P" "$@" >"$name.txt" 2>&1; echo "rc=$?" >>"$name.txt"
  sed -i -E 's#(/[A-Za-z0-9._@+-]+)+/#<path>/#g; s/\b(in|took) [0-9.]+ s\b/\1 <elapsed>/g' "$name.txt"
}
for t in "$TRACES"/*.json.gz "$TRACES"/two_ranks_a; do
  n=trace-$(basename "$t" .json.gz)
  run "$n" trace "$t" --json "$n.json" --html "$n.html"
done
for f in "$IN"/*.json "$IN"/opt/optimize.json; do
  n=saved-$(basename "$(dirname "$f")")-$(basename "$f" .json)
  run "$n-report" report "$f" -o "$n.html"
done
for f in "$IN"/diag-*.json "$IN"/prof-*.json; do
  n=diagnose-$(basename "$f" .json)
  run "$n" diagnose "$f" --json "$n.json" --html "$n.html"
done
run merge merge "$IN/ranks" --json merge.json --html merge.html
run compare-traces compare "$TRACES/tiny_compare_base.json.gz" "$TRACES/tiny_compare_test.json.gz" \
  --json compare-traces.json --html compare-traces.html
run compare-diags compare "$IN/diag-slow.json" "$IN/diag-warm.json" --json compare-diags.json \
  --html compare-diags.html
run compare-trace-run compare "$TRACES/a100_nccl_rank0.json.gz" "$IN/prof-cnn.json" \
  --json compare-trace-run.json
run compare-ddp compare "$IN/ranks/rank-0.json" "$IN/diag-ddp.json" --json compare-ddp.json
# Dates a file records of its own making (a re-saved result's "created") are scrubbed.
sed -i -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)?/<date>/g' ./*.json ./*.html 2>/dev/null
ls | wc -l
