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
#   BENCH_NAMESPACE=bench-runs       namespace of the runs
#   BENCH_PROBE_PORT=18090           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespace) up at the end
#
# Uses the cluster named "bench" (API port 27443); it is stopped at exit.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=bench

RUNS=${BENCH_RUNS:-1}
COUNT=${BENCH_COUNT:-200}
WINDOW=${BENCH_WINDOW:-60}
SETTLE=${BENCH_SETTLE:-20}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-runs}
PROBE_PORT=${BENCH_PROBE_PORT:-18090}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-runs.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-operator
FLOW_PREFIX=runbook-bench-op-

for v in RUNS COUNT WINDOW SETTLE TIMEOUT PROBE_PORT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "bench-runs: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done

T_BENCH=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }
progress() { printf '[bench-runs %s +%3.0fs] %s\n' "$(date +%H:%M:%S)" "$(since "$T_BENCH")" "$*" >&2; }
die() { progress "ERROR: $*"; exit 1; }

# A background heartbeat while a long command runs in the foreground.
HB_PID=
hb_start() { # label
	local label=$1
	(
		s=$SECONDS sp=
		trap 'kill "$sp" 2>/dev/null; exit 0' TERM
		while :; do
			sleep 15 &
			sp=$!
			wait "$sp"
			progress "  ... still $label ($((SECONDS - s))s)"
		done
	) &
	HB_PID=$!
}
hb_stop() {
	if [[ -n $HB_PID ]]; then
		kill "$HB_PID" 2>/dev/null || true
		wait "$HB_PID" 2>/dev/null || true
		HB_PID=
	fi
}

# ---------------------------------------------------------------------------
# cleanup
# ---------------------------------------------------------------------------
OP_PID=
BENCH_PID=
CLUSTER_STARTED=0
NS_CREATED=0
stop_pid() { # pid
	local i
	kill -TERM "$1" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
stop_operator() {
	[[ -n $OP_PID ]] || return 0
	stop_pid "$OP_PID"
	OP_PID=
}
cleanup() {
	local rc=$?
	set +e
	hb_stop
	if [[ -n $BENCH_PID ]]; then
		stop_pid "$BENCH_PID"
		BENCH_PID=
	fi
	stop_operator
	rm -f "$OUT/operator.kubeconfig" # a copy of the admin credentials
	if [[ $KEEP_CLUSTER == 1 ]]; then
		progress "BENCH_KEEP_CLUSTER=1: leaving cluster '$CLUSTER' and namespace $NS up"
	else
		if ((NS_CREATED)); then
			progress "deleting namespaces $NS and $NS-probe"
			kubectl delete namespace "$NS" "$NS-probe" --ignore-not-found --timeout=90s >/dev/null 2>&1 ||
				progress "  (namespace deletion did not finish; the cluster goes down anyway)"
		fi
		if ((CLUSTER_STARTED)); then
			progress "stopping cluster '$CLUSTER'"
			"$CLUSTER_SH" down "$CLUSTER" >>"$OUT/cluster-down.log" 2>&1
		fi
	fi
	progress "logs and raw data: $OUT"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "RunbookRun benchmark: rounds=$RUNS runs=$COUNT window=${WINDOW}s settle=${SETTLE}s (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
if [[ -n ${BENCH_OPERATOR:-} ]]; then
	OP_BIN=$BENCH_OPERATOR
	progress "using operator binary $OP_BIN (BENCH_OPERATOR)"
	progress "building the bench: cargo bench --locked --bench runs --no-run (log: $OUT/cargo-build.log)"
else
	OP_BIN=$REPO_ROOT/target/release/runbook-operator
	progress "building: cargo build --release --locked; cargo bench --locked --bench runs --no-run (log: $OUT/cargo-build.log)"
fi
hb_start "building"
rc=0
(
	cd "$REPO_ROOT"
	if [[ -z ${BENCH_OPERATOR:-} ]]; then cargo build --release --locked; fi
	cargo bench --locked --bench runs --no-run --message-format=json >"$OUT/cargo-bench.json"
) >"$OUT/cargo-build.log" 2>&1 || rc=$?
hb_stop
if ((rc != 0)); then
	tail -n 30 "$OUT/cargo-build.log" >&2
	die "building failed (exit $rc)"
fi
[[ -x $OP_BIN ]] || die "operator binary $OP_BIN is missing"
BENCH_BIN=$(grep '"reason":"compiler-artifact"' "$OUT/cargo-bench.json" | grep '"kind":\["bench"\]' |
	grep '"name":"runs"' | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4 || true)
[[ -n $BENCH_BIN && -x $BENCH_BIN ]] || die "cannot find the bench executable in $OUT/cargo-bench.json"
progress "operator: $OP_BIN; bench: $BENCH_BIN"

# ---------------------------------------------------------------------------
# cluster, CRDs, the operator's identity and FlowSchemas
# ---------------------------------------------------------------------------
progress "hack/cluster.sh up $CLUSTER"
CLUSTER_STARTED=1
hb_start "starting the cluster"
rc=0
"$CLUSTER_SH" up "$CLUSTER" >"$OUT/cluster-env.sh" 2>"$OUT/cluster-up.log" || rc=$?
hb_stop
if ((rc != 0)); then
	tail -n 30 "$OUT/cluster-up.log" >&2
	die "hack/cluster.sh up $CLUSTER failed (exit $rc)"
fi
# shellcheck disable=SC1091
. "$OUT/cluster-env.sh"
command -v kubectl >/dev/null || die "kubectl not on PATH after cluster.sh up"

progress "installing CRDs, RBAC for $OP_USER and FlowSchemas $FLOW_PREFIX*"
kubectl apply --server-side -f "$REPO_ROOT/crds/" >"$OUT/crds.log" 2>&1 || { cat "$OUT/crds.log" >&2; die "applying crds/ failed"; }
kubectl wait --for=condition=Established crd --all --timeout=60s >>"$OUT/crds.log" 2>&1 || die "CRDs not Established (log: $OUT/crds.log)"

# The operator runs as the user $OP_USER (impersonated by the admin credentials):
# cluster-admin through RBAC, and its own FlowSchemas, on the exempt priority level
# (never throttled, like the admin identity it would otherwise use). Each FlowSchema
# takes one kind of request; the lowest matchingPrecedence wins.
flow_schema() { # suffix precedence verbs-json groups-json resources-json [non-resource]
	printf -- '---\napiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata:\n  name: %s%s\nspec:\n  matchingPrecedence: %s\n  priorityLevelConfiguration: {name: exempt}\n  rules:\n  - subjects: [{kind: User, user: {name: %s}}]\n    resourceRules: [{verbs: %s, apiGroups: %s, resources: %s, namespaces: ["*"], clusterScope: true}]\n' \
		"$FLOW_PREFIX" "$1" "$2" "$OP_USER" "$3" "$4" "$5"
	if [[ -n ${6:-} ]]; then printf '    nonResourceRules: [{verbs: ["*"], nonResourceURLs: ["*"]}]\n'; fi
}
WRITES='[create, update, patch, delete, deletecollection]'
{
	printf -- '---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: %s\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: %s}\n' "$OP_USER" "$OP_USER"
	flow_schema events 300 '["*"]' '["", "events.k8s.io"]' '[events]'
	flow_schema crd-write 301 "$WRITES" '[ops.runbook.dev]' '["*"]'
	flow_schema write 302 "$WRITES" '["*"]' '["*"]'
	flow_schema get 303 '[get]' '["*"]' '["*"]'
	flow_schema list 304 '[list]' '["*"]' '["*"]'
	flow_schema watch 305 '[watch]' '["*"]' '["*"]'
	flow_schema other 309 '["*"]' '["*"]' '["*"]' non-resource
} >"$OUT/operator-identity.yaml"
kubectl apply -f "$OUT/operator-identity.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying $OUT/operator-identity.yaml failed"; }

# The admin kubeconfig, impersonating $OP_USER.
OP_KUBECONFIG=$OUT/operator.kubeconfig
sed "/^  user:\$/a\\    as: $OP_USER" "$KUBECONFIG" >"$OP_KUBECONFIG"
chmod 600 "$OP_KUBECONFIG"
who=$(kubectl --kubeconfig "$OP_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}' 2>>"$OUT/crds.log" || true)
[[ $who == "$OP_USER" ]] || die "the operator's kubeconfig authenticates as '$who', not $OP_USER"

if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
	kubectl create namespace "$NS" >/dev/null
fi
NS_CREATED=1

# ---------------------------------------------------------------------------
# operator
# ---------------------------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PROBE_PORT") 2>/dev/null; then
	die "port $PROBE_PORT is in use; set BENCH_PROBE_PORT"
fi
OP_URL=http://127.0.0.1:$PROBE_PORT
OP_LOG=$OUT/operator.log
progress "starting the operator (log: $OP_LOG)"
KUBECONFIG=$OP_KUBECONFIG NO_COLOR=1 RUST_LOG=${RUST_LOG:-info,kube=warn} \
	"$OP_BIN" run --namespace "$NS" --probe-addr "127.0.0.1:$PROBE_PORT" >"$OP_LOG" 2>&1 &
OP_PID=$!
deadline=$((SECONDS + TIMEOUT)) next=$((SECONDS + 15))
until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$OP_URL/readyz" 2>/dev/null || true) == 200 ]]; do
	if ! kill -0 "$OP_PID" 2>/dev/null; then
		tail -n 30 "$OP_LOG" >&2
		die "the operator exited before it was ready"
	fi
	((SECONDS < deadline)) || die "operator not ready after ${TIMEOUT}s (log: $OP_LOG)"
	if ((SECONDS >= next)); then
		progress "  ... waiting for /readyz"
		next=$((SECONDS + 15))
	fi
	sleep 0.1
done
progress "operator ready (pid $OP_PID)"

# ---------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------
rc=0
BENCH_OPERATOR_URL=$OP_URL BENCH_OPERATOR_PID=$OP_PID BENCH_NAMESPACE=$NS \
	BENCH_COUNT=$COUNT BENCH_RUNS=$RUNS BENCH_WINDOW=$WINDOW BENCH_SETTLE=$SETTLE \
	BENCH_TIMEOUT=$TIMEOUT BENCH_OUT=$OUT BENCH_JOB_RUN_FOR=${BENCH_JOB_RUN_FOR:-} \
	"$BENCH_BIN" --bench >"$OUT/bench.out" &
BENCH_PID=$!
wait "$BENCH_PID" || rc=$?
BENCH_PID=
if ((rc != 0)); then
	for f in "$OUT"/failed-run-*.yaml; do
		[[ -e $f ]] && progress "  a failed run, as last seen: $f"
	done
	if ! grep -q '^figure' "$OUT/bench.out"; then
		progress "---- last lines of $OP_LOG ----"
		tail -n 20 "$OP_LOG" >&2 || true
		die "the benchmark failed (exit $rc)"
	fi
fi
stop_operator
{
	echo
	printf '== runbook-operator RunbookRun benchmark  %s  (BENCH_RUNS=%s, %s runs, %s cores, tree %s) ==\n' \
		"$(date -u +%FT%TZ)" "$RUNS" "$COUNT" "$(nproc)" "$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")"
	printf 'operator binary: %s (mtime %s)\n' "$OP_BIN" "$(date -u -r "$OP_BIN" +%FT%TZ)"
	printf 'machine load average (1/5/15 min): %s at start, %s at the end (a shared box: compare with care)\n' \
		"$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "some runs did not succeed (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
