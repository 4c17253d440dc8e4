#!/usr/bin/env bash
# What a `tcp_echo` server spends per round trip, in units that this shared
# 2-core machine does not blur: system calls (perf's syscall tracepoints),
# CPU time of the server and of the load generator, and instructions
# executed in user space (valgrind's callgrind).
#
# Why: `tcp_echo` saturates both CPUs (server and load generator share
# them), so its rate is about 2 CPUs / (server + loadgen CPU per round
# trip), and on this machine that CPU time moves by ±25% from run to run for
# every runtime alike. About 90% of it is the kernel's TCP work behind one
# `recvfrom` and one `sendto` per round trip; what a runtime adds is the
# rest: its other system calls and its user-space instructions. Those are
# what this script counts.
#
# Servers are `label=binary` pairs; each must speak the peers' protocol
# (`binary tcp_echo --port 0` prints `port N`, serves until SIGTERM). By
# default: gort's bench binary, and Tokio's and may's peers if `run.sh`
# built them. Under callgrind gort runs with one P and Tokio with one
# worker (valgrind runs one thread at a time anyway); a callgrind run that
# dies of valgrind's own assertion on signals (gort's preemption signals)
# is retried.
#
# Usage: bench/echo-cost.sh [label=binary ...]
#   DUR=4 (seconds per run)  PEERS_CACHE=~/.cache/peers
#   needs perf (linux-perf) and the peers' loadgen (../shared/peers/run.sh
#   builds it); without valgrind the instruction column says n/a.
set -euo pipefail
DUR=${DUR:-4}
PEERS_CACHE=${PEERS_CACHE:-$HOME/.cache/peers}
LOADGEN=$PEERS_CACHE/target/release/peers-loadgen
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
server=
trap '[[ -n $server ]] && kill -9 "$server" 2>/dev/null; rm -rf "$work"' EXIT
[[ -x $LOADGEN ]] || { echo "no loadgen at $LOADGEN: run ../shared/peers/run.sh once" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }

servers=("$@")
if ((${#servers[@]} == 0)); then
  (cd "$root" && cargo build --release -q -p gort-bench)
  servers=("gort=$root/target/release/gort-bench")
  for peer in tokio may; do
    bin=$PEERS_CACHE/target/release/peers-$peer
    [[ -x $bin ]] && servers+=("$peer=$bin")
  done
fi

# start_server CMD...: start it, wait for its port; sets `server` and `port`.
start_server() {
  "$@" tcp_echo --port 0 >"$work/port" 2>"$work/server.err" &
  server=$!
  for _ in $(seq 300); do grep -q '^port' "$work/port" && break; sleep 0.1; done
  port=$(awk '/^port/{print $2}' "$work/port")
  [[ -n $port ]] || { echo "server $* printed no port" >&2; cat "$work/server.err" >&2; exit 1; }
}

stop_server() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=
}

# loadgen [PREFIX...]: run the load generator (under PREFIX, if given)
# against `port`; prints the number of round trips.
loadgen() {
  "$@" "$LOADGEN" --addr "127.0.0.1:$port" --duration "$DUR" >"$work/lg.out"
  awk -v d="$DUR" '/roundtrips\/s/{printf "%d\n", $2 * d}' "$work/lg.out"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

syscalls=recvfrom,sendto,read,write,pread64,epoll_wait,epoll_pwait,epoll_pwait2,futex,sched_yield,nanosleep,clock_nanosleep
events=$(echo "$syscalls" | sed 's/\([a-z_0-9]*\)/syscalls:sys_enter_\1/g')

echo "| server | round trips/s | server CPU µs/RT | loadgen CPU µs/RT | system calls per round trip | user instructions/RT |"
echo "|---|---:|---:|---:|---|---:|"
for entry in "${servers[@]}"; do
  label=${entry%%=*} bin=${entry#*=}

  start_server "$bin"
  t0=$(cpu_ticks "$server")
  perf stat -x, -e "$events" -p "$server" -o "$work/perf.out" &
  perf_pid=$!
  rts=$(loadgen perf stat -x, -e task-clock -o "$work/lg.perf" --)
  t1=$(cpu_ticks "$server")
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  stop_server
  hz=$(getconf CLK_TCK)
  srv_us=$(awk -v a="$t0" -v b="$t1" -v n="$rts" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)*1e6/hz/n}')
  lg_us=$(awk -F, -v n="$rts" '/task-clock/{printf "%.2f", $1*1000/n}' "$work/lg.perf")
  calls=$(grep -v '^#' "$work/perf.out" | awk -F, -v n="$rts" '
    $3 ~ /sys_enter/ && $1 / n >= 0.0005 { name = $3; sub(/.*sys_enter_/, "", name); printf "%s%s %.3f", sep, name, $1/n; sep = ", " }')

  ir_rt=n/a
  if command -v valgrind >/dev/null; then
    for _attempt in 1 2 3; do
      rm -f "$work/cg.out"
      start_server env GORT_PROCS=1 TOKIO_WORKER_THREADS=1 \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin"
      vg_rts=$(loadgen)
      stop_server
      ir=$(awk '/^(summary|totals):/{print $2; exit}' "$work/cg.out" 2>/dev/null || true)
      if [[ -n $ir && $vg_rts -gt 0 ]]; then
        ir_rt=$((ir / vg_rts))
        break
      fi
    done
  fi
  echo "| $label | $((rts / DUR)) | $srv_us | $lg_us | $calls | $ir_rt |"
done
