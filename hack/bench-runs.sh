#!/usr/bin/env bash
# Benchmark of RunbookRun execution (issue 3, "Runbooks that really run"):
# BENCH_COUNT (200) concurrent runs of a five-step Runbook -- scale (by 1), setEnv,
# restart (waits for the rollout), job, http (to a server on 127.0.0.1) -- each on
# its own Deployment, repeated BENCH_RUNS times, then a settled window.
#
# usage: hack/bench-runs.sh
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits
# non-zero only when something broke (cluster did not start, operator died, a
# run did not succeed, a wait timed out). Progress goes to stderr (a line at
# least every ~15 s), the summary table to stdout (also saved as summary.txt in
# the output dir). The measuring is done by benches/runs.rs (its header has the
# exact definitions, and the summary repeats them):
#   - operator overhead per step transition, p50/p99: time from a step's
#     condition being met (Deployment shows the scale / env change, restarted
#     rollout complete, Job Complete, HTTP answered) to the next step starting,
#     all seen on the bench's own clock through watches
#   - runs per second, run duration, queueing of the first step
#   - API requests per step: the operator's, exactly (it runs impersonating the
#     user runbook-bench-operator, and FlowSchemas runbook-bench-op-* sort its
#     requests into get/list/watch/crd-write/write/events/other, counted by
#     apiserver_flowcontrol_dispatched_requests_total), all clients'
#     (apiserver_request_total), and the operator's own api_writes metric
#   - operator VmRSS at the end of each round and idle, operator CPU time per step
#   - calibration: how late the bench's own watches deliver a change (a
#     ConfigMap and a RunbookRun in namespace $BENCH_NAMESPACE-probe, which the
#     operator does not watch, patched once a second)
#   - writes over a BENCH_WINDOW s window with the Runbook settled (no
#     schedule, its runs finished): target 0
#
# Environment (defaults after the =):
#   BENCH_RUNS=1          rounds of BENCH_COUNT runs (median/min/max over them).
#                         One by default: a round of 200 takes ~4 min on a 2-core
#                         machine, mostly kube-controller-manager rolling out 200
#                         Deployments twice at its default 20 requests/s
#   BENCH_COUNT=200       concurrent runs per round (and Deployments)
#   BENCH_WINDOW=60       seconds of the settled write window
#   BENCH_SETTLE=20       seconds idle before the window
#   BENCH_TIMEOUT=600     seconds to wait for any single step
#   BENCH_JOB_RUN_FOR=    Go duration the Job pods run for (kwok; default: done at once)
#   BENCH_CLUSTER=bench   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-runs       namespace of the runs
#   BENCH_PROBE_PORT=18090           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespace) up at the end
#
# Uses the cluster named "bench" (API port 27443) unless BENCH_CLUSTER names another;
# it is stopped at exit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-runs
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

RUNS=${BENCH_RUNS:-1}
COUNT=${BENCH_COUNT:-200}
WINDOW=${BENCH_WINDOW:-60}
SETTLE=${BENCH_SETTLE:-20}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-runs}
# The runs act as the ServiceAccount `default` of $NS: its requests count as the operator's.
RUNNER_NAMESPACES=$NS
PROBE_PORT=${BENCH_PROBE_PORT:-18090}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-runs.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-operator
FLOW_PREFIX=runbook-bench-op-

KEEP_NOTE="namespace $NS"
check_positive RUNS COUNT WINDOW SETTLE TIMEOUT PROBE_PORT

delete_namespaces() {
	progress "deleting namespaces $NS and $NS-probe"
	kubectl delete namespace "$NS" "$NS-probe" --ignore-not-found --timeout=90s >/dev/null 2>&1 ||
		progress "  (namespace deletion did not finish; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "RunbookRun benchmark: rounds=$RUNS runs=$COUNT window=${WINDOW}s settle=${SETTLE}s (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
build_binaries runs "$REPO_ROOT/target/release/runbook-operator"

# ---------------------------------------------------------------------------
# cluster, CRDs, the operator's identity and FlowSchemas
# ---------------------------------------------------------------------------
start_cluster_with_operator_identity

if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
	kubectl create namespace "$NS" >/dev/null
fi
NS_CREATED=1

# ---------------------------------------------------------------------------
# operator
# ---------------------------------------------------------------------------
check_port_free
start_operator_as_user "starting the operator" --namespace "$NS"

# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
rc=0
run_bench BENCH_OPERATOR_URL="$OP_URL" BENCH_OPERATOR_PID="$OP_PID" BENCH_NAMESPACE="$NS" \
	BENCH_COUNT="$COUNT" BENCH_RUNS="$RUNS" BENCH_WINDOW="$WINDOW" BENCH_SETTLE="$SETTLE" \
	BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" BENCH_JOB_RUN_FOR="${BENCH_JOB_RUN_FOR:-}" || rc=$?
if ((rc != 0)); then
	for f in "$OUT"/failed-run-*.yaml; do
		[[ -e $f ]] && progress "  a failed run, as last seen: $f"
	done
	figures_or_die "$rc"
fi
stop_operator
{
	summary_head "runbook-operator RunbookRun benchmark" "BENCH_RUNS=$RUNS, $COUNT runs"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "some runs did not succeed (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
