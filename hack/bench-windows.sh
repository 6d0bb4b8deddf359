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
# Uses the cluster named "bench" (API port 27443); it is stopped at exit. The
# operator watches all namespaces (no --namespace). Takes about 7 minutes with
# the defaults on a 2-core machine, most of it waiting for T, the window's
# minute and the quiet intervals.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}

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

for v in WINDOWS NAMESPACES SIMULTANEOUS DURATION LEAD QUIET SETTLE TIMEOUT PROBE_PORT; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "bench-windows: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
if [[ -n $DEPLOYMENTS_PER_NS ]] && ! [[ $DEPLOYMENTS_PER_NS =~ ^[0-9]+$ && $DEPLOYMENTS_PER_NS -gt 0 ]]; then
	echo "bench-windows: DEPLOYMENTS_PER_NS must be a positive integer (got '$DEPLOYMENTS_PER_NS')" >&2
	exit 2
fi
((SIMULTANEOUS <= WINDOWS)) || { echo "bench-windows: SIMULTANEOUS ($SIMULTANEOUS) exceeds WINDOWS ($WINDOWS)" >&2; exit 2; }
((NAMESPACES <= WINDOWS && NAMESPACES <= 100)) || { echo "bench-windows: NAMESPACES must be at most WINDOWS and 100" >&2; exit 2; }
((LEAD >= 20)) || { echo "bench-windows: BENCH_LEAD must be at least 20" >&2; exit 2; }

T_BENCH=$EPOCHREALTIME
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }
progress() { printf '[bench-windows %s +%3.0fs] %s\n' "$(date +%H:%M:%S)" "$(since "$T_BENCH")" "$*" >&2; }
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
		progress "BENCH_KEEP_CLUSTER=1: leaving cluster '$CLUSTER' and namespaces $NS-* up"
	else
		if ((NS_CREATED)); then
			# Not waited for: the operator is stopped, so a window interrupted while open
			# keeps its finalizer; the cluster goes down anyway.
			progress "deleting namespaces $NS-* (not waiting)"
			kubectl delete namespace -l "$NS_LABEL" --wait=false >/dev/null 2>&1 ||
				progress "  (namespace deletion failed; the cluster goes down anyway)"
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

progress "MaintenanceWindow benchmark: windows=$WINDOWS namespaces=$NAMESPACES simultaneous=$SIMULTANEOUS duration=${DURATION}s lead>=${LEAD}s quiet=${QUIET}s (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
if [[ -n ${BENCH_OPERATOR:-} ]]; then
	OP_BIN=$BENCH_OPERATOR
	progress "using operator binary $OP_BIN (BENCH_OPERATOR)"
	progress "building the bench: cargo bench --locked --bench windows --no-run (log: $OUT/cargo-build.log)"
else
	TARGET_DIR=${CARGO_TARGET_DIR:-target}
	[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
	OP_BIN=$TARGET_DIR/release/runbook-operator
	progress "building: cargo build --release --locked; cargo bench --locked --bench windows --no-run (log: $OUT/cargo-build.log)"
fi
hb_start "building"
rc=0
(
	cd "$REPO_ROOT"
	if [[ -z ${BENCH_OPERATOR:-} ]]; then cargo build --release --locked; fi
	cargo bench --locked --bench windows --no-run --message-format=json >"$OUT/cargo-bench.json"
) >"$OUT/cargo-build.log" 2>&1 || rc=$?
hb_stop
if ((rc != 0)); then
	tail -n 30 "$OUT/cargo-build.log" >&2
	die "building failed (exit $rc)"
fi
[[ -x $OP_BIN ]] || die "operator binary $OP_BIN is missing"
BENCH_BIN=$(grep '"reason":"compiler-artifact"' "$OUT/cargo-bench.json" | grep '"kind":\["bench"\]' |
	grep '"name":"windows"' | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4 || true)
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

# The bench creates the namespaces (labelled $NS_LABEL); cleanup deletes by that label.
NS_CREATED=1

# ---------------------------------------------------------------------------
# operator (all namespaces)
# ---------------------------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PROBE_PORT") 2>/dev/null; then
	die "port $PROBE_PORT is in use; set BENCH_PROBE_PORT"
fi
OP_URL=http://127.0.0.1:$PROBE_PORT
OP_LOG=$OUT/operator.log
progress "starting the operator, watching all namespaces (log: $OP_LOG)"
KUBECONFIG=$OP_KUBECONFIG NO_COLOR=1 RUST_LOG=${RUST_LOG:-info,kube=warn} \
	"$OP_BIN" run --probe-addr "127.0.0.1:$PROBE_PORT" >"$OP_LOG" 2>&1 &
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
	BENCH_WINDOWS=$WINDOWS BENCH_NAMESPACES=$NAMESPACES BENCH_SIMULTANEOUS=$SIMULTANEOUS \
	BENCH_DEPLOYMENTS_PER_NS=$DEPLOYMENTS_PER_NS BENCH_WINDOW_DURATION=$DURATION \
	BENCH_LEAD=$LEAD BENCH_QUIET=$QUIET BENCH_SETTLE=$SETTLE BENCH_TIMEOUT=$TIMEOUT \
	BENCH_OUT=$OUT "$BENCH_BIN" --bench >"$OUT/bench.out" &
BENCH_PID=$!
wait "$BENCH_PID" || rc=$?
BENCH_PID=
if ((rc != 0)) && ! grep -q '^figure' "$OUT/bench.out"; then
	progress "---- last lines of $OP_LOG ----"
	tail -n 20 "$OP_LOG" >&2 || true
	die "the benchmark failed (exit $rc)"
fi
stop_operator
{
	echo
	printf '== runbook-operator MaintenanceWindow benchmark  %s  (%s windows, %s namespaces, %s simultaneous, %s cores, tree %s) ==\n' \
		"$(date -u +%FT%TZ)" "$WINDOWS" "$NAMESPACES" "$SIMULTANEOUS" "$(nproc)" "$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")"
	printf 'operator binary: %s (mtime %s)\n' "$OP_BIN" "$(date -u -r "$OP_BIN" +%FT%TZ)"
	printf 'machine load average (1/5/15 min): %s at start, %s at the end (a shared box: compare with care)\n' \
		"$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "some windows did not open or restore (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
