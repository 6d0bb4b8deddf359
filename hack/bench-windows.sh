#!/usr/bin/env bash
# Benchmark of MaintenanceWindows at scale (the issue's words: "1,000 windows across 50
# namespaces, a tenth of them opening in the same minute: p50/p99 from the scheduled
# instant to the last change applied, operator RSS, API writes between boundaries
# (target: zero)").
#
# usage: hack/bench-windows.sh
#        WINDOWS=40 NAMESPACES=4 SIMULTANEOUS=8 hack/bench-windows.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits
# non-zero only when something broke (cluster did not start, operator died, a
# wait timed out, a window never opened or never restored). Progress goes to
# stderr (a line at least every ~15 s), the summary table to stdout (also saved
# as summary.txt in the output dir). The measuring is done by benches/windows.rs
# (its header has the exact definitions, and the summary repeats them):
#   - NAMESPACES namespaces, each with a few Deployments (1 replica; kwok makes
#     them Available), and WINDOWS MaintenanceWindows spread over them:
#     SIMULTANEOUS one-off windows all opening at the same instant T (a whole
#     minute at least BENCH_LEAD s after the windows were created) for
#     BENCH_WINDOW_DURATION s, each scaling its own Deployment to 0 and setting
#     MAINTENANCE_MODE=true; the rest recurring (yearly, half a year ahead, ten
#     time zones), which only settle
#   - T -> the last change visible on the Deployment (replicas 0 AND env set),
#     and END -> restored (replicas 1 AND env gone), per window, seen through a
#     watch on the bench's clock: count, p50, p99, max
#   - operator VmRSS before the windows, with all settled, peaks during the open
#     and the restore, idle, and VmHWM
#   - the operator's writes in three intervals without a boundary (settled
#     before T, while open, after the restore): exact, by running the operator
#     as the user runbook-bench-windows-operator whose requests FlowSchemas
#     runbook-bench-mw-* count; also its own api_writes metric. Target 0
#
# Environment (defaults after the =):
#   WINDOWS=1000          MaintenanceWindows in all (also BENCH_WINDOWS)
#   NAMESPACES=50         namespaces they are spread over (also BENCH_NAMESPACES)
#   SIMULTANEOUS=100      of them, one-off windows opening at the same instant
#                         (also BENCH_SIMULTANEOUS)
#   DEPLOYMENTS_PER_NS=   Deployments per namespace (default: max(3, SIMULTANEOUS
#                         / NAMESPACES rounded up); each one-off window has its own)
#   BENCH_WINDOW_DURATION=60  seconds the one-off windows stay open
#   BENCH_LEAD=120        at least this many seconds from creating the windows to T
#                         (T is then rounded up to a whole minute)
#   BENCH_QUIET=60        seconds of each quiet interval (the one before T is
#                         shortened to what is left before T)
#   BENCH_SETTLE=20       seconds idle after the restore before the last interval
#   BENCH_TIMEOUT=600     seconds to wait for any single step
#   BENCH_CLUSTER=bench   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-windows    namespace prefix (namespaces are PREFIX-NN)
#   BENCH_PROBE_PORT=18091           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#                         (${CARGO_TARGET_DIR}/release/... when that is set)
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespaces) up at the end
#
# Uses the cluster named "bench" (API port 27443) unless BENCH_CLUSTER names another;
# it is stopped at exit. The
# operator watches all namespaces (no --namespace). Takes about 7 minutes with
# the defaults on a 2-core machine, most of it waiting for T, the window's
# minute and the quiet intervals.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-windows
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

WINDOWS=${WINDOWS:-${BENCH_WINDOWS:-1000}}
NAMESPACES=${NAMESPACES:-${BENCH_NAMESPACES:-50}}
SIMULTANEOUS=${SIMULTANEOUS:-${BENCH_SIMULTANEOUS:-100}}
DEPLOYMENTS_PER_NS=${DEPLOYMENTS_PER_NS:-${BENCH_DEPLOYMENTS_PER_NS:-}}
DURATION=${BENCH_WINDOW_DURATION:-60}
LEAD=${BENCH_LEAD:-120}
QUIET=${BENCH_QUIET:-60}
SETTLE=${BENCH_SETTLE:-20}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-windows}
PROBE_PORT=${BENCH_PROBE_PORT:-18091}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-windows.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-windows-operator
FLOW_PREFIX=runbook-bench-mw-
NS_LABEL=bench.runbook.dev/windows

KEEP_NOTE="namespaces $NS-*"
check_positive WINDOWS NAMESPACES SIMULTANEOUS DURATION LEAD QUIET SETTLE TIMEOUT PROBE_PORT
if [[ -n $DEPLOYMENTS_PER_NS ]] && ! [[ $DEPLOYMENTS_PER_NS =~ ^[0-9]+$ && $DEPLOYMENTS_PER_NS -gt 0 ]]; then
	echo "bench-windows: DEPLOYMENTS_PER_NS must be a positive integer (got '$DEPLOYMENTS_PER_NS')" >&2
	exit 2
fi
((SIMULTANEOUS <= WINDOWS)) || { echo "bench-windows: SIMULTANEOUS ($SIMULTANEOUS) exceeds WINDOWS ($WINDOWS)" >&2; exit 2; }
((NAMESPACES <= WINDOWS && NAMESPACES <= 100)) || { echo "bench-windows: NAMESPACES must be at most WINDOWS and 100" >&2; exit 2; }
((LEAD >= 20)) || { echo "bench-windows: BENCH_LEAD must be at least 20" >&2; exit 2; }

# Not waited for: the operator is stopped, so a window interrupted while open keeps its
# finalizer; the cluster goes down anyway.
delete_namespaces() {
	progress "deleting namespaces $NS-* (not waiting)"
	kubectl delete namespace -l "$NS_LABEL" --wait=false >/dev/null 2>&1 ||
		progress "  (namespace deletion failed; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "MaintenanceWindow benchmark: windows=$WINDOWS namespaces=$NAMESPACES simultaneous=$SIMULTANEOUS duration=${DURATION}s lead>=${LEAD}s quiet=${QUIET}s (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
build_binaries windows "$TARGET_DIR/release/runbook-operator"

# ---------------------------------------------------------------------------
# cluster, CRDs, the operator's identity and FlowSchemas
# ---------------------------------------------------------------------------
start_cluster_with_operator_identity

# The bench creates the namespaces (labelled $NS_LABEL); cleanup deletes by that label.
NS_CREATED=1

# ---------------------------------------------------------------------------
# operator (all namespaces)
# ---------------------------------------------------------------------------
check_port_free
start_operator_as_user "starting the operator, watching all namespaces"

# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
rc=0
run_bench BENCH_OPERATOR_URL="$OP_URL" BENCH_OPERATOR_PID="$OP_PID" BENCH_NAMESPACE="$NS" \
	BENCH_WINDOWS="$WINDOWS" BENCH_NAMESPACES="$NAMESPACES" BENCH_SIMULTANEOUS="$SIMULTANEOUS" \
	BENCH_DEPLOYMENTS_PER_NS="$DEPLOYMENTS_PER_NS" BENCH_WINDOW_DURATION="$DURATION" \
	BENCH_LEAD="$LEAD" BENCH_QUIET="$QUIET" BENCH_SETTLE="$SETTLE" BENCH_TIMEOUT="$TIMEOUT" \
	BENCH_OUT="$OUT" || rc=$?
if ((rc != 0)); then
	figures_or_die "$rc"
fi
stop_operator
{
	summary_head "runbook-operator MaintenanceWindow benchmark" \
		"$WINDOWS windows, $NAMESPACES namespaces, $SIMULTANEOUS simultaneous"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "some windows did not open or restore (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
