#!/usr/bin/env bash
# Benchmark of BackupPolicies at scale (the issue's words: "500 policies due every minute:
# p50/p99 from scheduled instant to Job created, operator RSS, API writes between due times
# (target: zero)").
#
# usage: hack/bench-backups.sh
#        POLICIES=20 NAMESPACES=2 hack/bench-backups.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits
# non-zero only when something broke (cluster did not start, operator died, a
# wait timed out, a due time passed without its backup Job, a backup was never
# recorded as finished). Progress goes to stderr (a line at least every ~15 s),
# the summary table to stdout (also saved as summary.txt in the output dir). The
# measuring is done by benches/backups.rs (its header has the exact definitions,
# and the summary repeats them):
#   - NAMESPACES namespaces, POLICIES BackupPolicies spread over them, all with
#     cron "* * * * *" and a trivial jobTemplate (backoffLimit 0, restartPolicy
#     Never, one container; kwok completes the pod at once), default retention
#     (3 successful Jobs kept) unless BENCH_SUCCESSFUL_JOBS, no prune, a verify
#     Job only with VERIFY=1. They are created right after a whole minute, so
#     the first due time T1 is the next one; then DUE_TIMES due times T1, T1+60s,
#     ... are measured
#   - per policy and due time T, seen through watches on the bench's clock: T ->
#     the backup Job's first watch event (the issue's figure), T -> Job finished,
#     T -> the policy's status.history recording T's backup Succeeded, and Job
#     finished -> recorded: count, p50, p99, max (all due times, and each)
#   - the operator's writes for each due time, per backup, by kind (status
#     writes to ops.runbook.dev, Job creates, Job deletes by retention, other,
#     Events), its CPU time and VmRSS peak
#   - the operator's writes between due times: settled before T1, and after each
#     due time from the moment its backups were all recorded done and the
#     operator quiet until 2 s before the next one: exact, by running the
#     operator as the user runbook-bench-backups-operator whose requests
#     FlowSchemas runbook-bench-bp-* count; also its own api_writes metric.
#     Target 0
#   - operator VmRSS before the policies, settled before T1, peak during the due
#     times, at the end, and VmHWM
#
# Environment (defaults after the =):
#   POLICIES=500          BackupPolicies in all (also BENCH_POLICIES)
#   NAMESPACES=10         namespaces they are spread over (also BENCH_NAMESPACES)
#   DUE_TIMES=3           due times measured, one a minute (also BENCH_DUE_TIMES)
#   VERIFY=0              1: every policy also has a verify Job (also BENCH_VERIFY)
#   BENCH_SUCCESSFUL_JOBS=   spec.retention.successfulJobs of every policy (default:
#                         unset, the policy's default of 3; with DUE_TIMES <= 3
#                         retention then deletes nothing)
#   BENCH_KCM_QPS=300     --kube-api-qps of the bench cluster's kube-controller-manager
#                         (burst twice that; hack/cluster.sh KCM_API_QPS); 0 keeps its
#                         default of 20, at which its job controller finishes about 4
#                         Jobs a second, so 500 backups take ~150 s and run into the
#                         next due time. Only applies when this script starts the cluster
#   BENCH_TIMEOUT=600     seconds to wait for any single step
#   BENCH_CLUSTER=bench   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-backups    namespace prefix (namespaces are PREFIX-NN)
#   BENCH_PROBE_PORT=18093           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#                         (${CARGO_TARGET_DIR}/release/... when that is set)
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespaces) up at the end
#
# Uses the cluster named "bench" (API port 27443) unless BENCH_CLUSTER names another;
# it is stopped at exit. The operator watches all namespaces (no --namespace). Takes
# about 5 minutes with the defaults on a 2-core machine, most of it the due minutes
# (DUE_TIMES + 1 of them, plus up to a minute to start right after a whole one).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-backups
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

POLICIES=${POLICIES:-${BENCH_POLICIES:-500}}
NAMESPACES=${NAMESPACES:-${BENCH_NAMESPACES:-10}}
DUE_TIMES=${DUE_TIMES:-${BENCH_DUE_TIMES:-3}}
VERIFY=${VERIFY:-${BENCH_VERIFY:-0}}
SUCCESSFUL_JOBS=${BENCH_SUCCESSFUL_JOBS:-}
KCM_QPS=${BENCH_KCM_QPS:-300}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-backups}
PROBE_PORT=${BENCH_PROBE_PORT:-18093}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-backups.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-backups-operator
FLOW_PREFIX=runbook-bench-bp-
NS_LABEL=bench.runbook.dev/backups

KEEP_NOTE="namespaces $NS-*"
check_positive POLICIES NAMESPACES DUE_TIMES TIMEOUT PROBE_PORT
[[ $VERIFY == 0 || $VERIFY == 1 ]] || { echo "bench-backups: VERIFY must be 0 or 1 (got '$VERIFY')" >&2; exit 2; }
if [[ -n $SUCCESSFUL_JOBS ]]; then check_positive SUCCESSFUL_JOBS; fi
[[ $KCM_QPS =~ ^[0-9]+$ ]] || { echo "bench-backups: BENCH_KCM_QPS must be a number (got '$KCM_QPS')" >&2; exit 2; }
((NAMESPACES <= POLICIES && NAMESPACES <= 100)) || { echo "bench-backups: NAMESPACES must be at most POLICIES and 100" >&2; exit 2; }
((POLICIES <= 9999)) || { echo "bench-backups: POLICIES must be at most 9999" >&2; exit 2; }
KCM_NOTE=$KCM_QPS
if ((KCM_QPS == 0)); then KCM_NOTE="default (20)"; fi

# Not waited for: the cluster goes down anyway.
delete_namespaces() {
	progress "deleting namespaces $NS-* (not waiting)"
	kubectl delete namespace -l "$NS_LABEL" --wait=false >/dev/null 2>&1 ||
		progress "  (namespace deletion failed; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "BackupPolicy benchmark: policies=$POLICIES namespaces=$NAMESPACES due-times=$DUE_TIMES verify=$VERIFY successfulJobs=${SUCCESSFUL_JOBS:-default} kcm-qps=$KCM_NOTE (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
build_binaries backups "$TARGET_DIR/release/runbook-operator"

# ---------------------------------------------------------------------------
# cluster, CRDs, the operator's identity and FlowSchemas
# ---------------------------------------------------------------------------
if ((KCM_QPS > 0)); then
	export KCM_API_QPS=$KCM_QPS
fi
start_cluster_with_operator_identity
# Job creates and deletes get FlowSchemas of their own (ahead of "events" at 300), so the
# summary tells them from status writes and other writes.
{
	flow_schema job-create 298 '[create]' '[batch]' '[jobs]'
	flow_schema job-delete 299 '[delete, deletecollection]' '[batch]' '[jobs]'
} >"$OUT/operator-job-flows.yaml"
kubectl apply -f "$OUT/operator-job-flows.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying $OUT/operator-job-flows.yaml failed"; }

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
	BENCH_POLICIES="$POLICIES" BENCH_NAMESPACES="$NAMESPACES" BENCH_DUE_TIMES="$DUE_TIMES" \
	BENCH_VERIFY="$VERIFY" BENCH_SUCCESSFUL_JOBS="$SUCCESSFUL_JOBS" BENCH_TIMEOUT="$TIMEOUT" \
	BENCH_OUT="$OUT" || rc=$?
if ((rc != 0)); then
	figures_or_die "$rc"
fi
stop_operator
{
	summary_head "runbook-operator BackupPolicy benchmark" \
		"$POLICIES policies, $NAMESPACES namespaces, $DUE_TIMES due times, verify $VERIFY, kube-controller-manager qps $KCM_NOTE"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	progress "---- the operator's warnings and errors (last 20; log: $OP_LOG) ----"
	grep -E 'WARN|ERROR' "$OP_LOG" | tail -n 20 >&2 || true
	die "some backups did not run or finish (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
