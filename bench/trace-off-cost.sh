#!/usr/bin/env bash
# What the execution tracer's hooks cost while tracing is off, in executed
# instructions (valgrind's callgrind), on `pingpong` and `ring`.
#
# "Before" is this commit with the hooks compiled out (`trace::hooks::on`
# made a constant false: `execute` has only its untraced variant, and every
# hook's test folds away),
# "after" is this commit as it is. Instructions, not time: on a shared
# 2-core machine run-to-run timing spreads far more than the 2% being
# measured, while instruction counts of one binary vary by well under 1%.
# Each benchmark runs with GORT_PROCS=1 (valgrind runs one thread at a
# time anyway; with one P the schedule is nearly deterministic) and R times
# (default 3); the medians are compared.
#
# Usage: bench/trace-off-cost.sh            (needs valgrind: apt-get install valgrind)
set -euo pipefail
R=${R:-3}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

# "after" is built from the working tree, "before" from HEAD: they must agree.
git -C "$root" diff --quiet HEAD -- src bench/src ||
  { echo "commit or stash the changes under src/ first" >&2; exit 1; }
git -C "$root" worktree add --detach "$work/src" HEAD >/dev/null
python3 - "$work/src/src/trace/hooks.rs" <<'EOF'
import sys
path = sys.argv[1]
s = open(path).read()
patched = s.replace("    ENABLED.load(Ordering::Relaxed)\n}", "    false && ENABLED.load(Ordering::Relaxed)\n}", 1)
if patched.count("false && ENABLED") != 1:
    sys.exit("trace-off-cost.sh: trace/hooks.rs no longer matches the patch; update this script")
open(path, "w").write(patched)
EOF

echo "building both variants..." >&2
(cd "$root" && cargo build --release -q -p gort-bench)
(cd "$work/src" && CARGO_TARGET_DIR="$work/target" cargo build --release -q -p gort-bench)
after="$root/target/release/gort-bench"
before="$work/target/release/gort-bench"

count() { # binary bench -> instructions
  GORT_PROCS=1 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$1" "$2" 2>&1 |
    awk '/Collected/ {print $4}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

printf '| benchmark | hooks compiled out | hooks, tracing off | cost |\n|---|---|---|---|\n'
for bench in pingpong ring; do
  b=() a=()
  for _ in $(seq "$R"); do
    b+=("$(count "$before" "$bench")")
    a+=("$(count "$after" "$bench")")
  done
  mb=$(printf '%s\n' "${b[@]}" | median)
  ma=$(printf '%s\n' "${a[@]}" | median)
  pct=$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%+.2f%%", (a - b) * 100 / b}')
  printf '| %s | %s | %s | %s |\n' "$bench" "$mb" "$ma" "$pct"
  echo "  $bench runs: before ${b[*]} / after ${a[*]}" >&2
done
