#!/usr/bin/env bash
# Benchmark of the Alertmanager receiver under an alert storm: BENCH_RUNS times, 1,000 webhook
# POSTs (100 distinct firing alerts, each sent 10 times, interleaved, 32 in flight, 10 groups,
# 20 namespaces) into fresh namespaces -> runs created vs expected (100 minus the firings a
# cooldown suppressed), webhook -> run created and request latency, the receiver's own
# counters, operator RSS and CPU, the operator's API requests during the storm and in a
# settled window after it (which must show 0 writes), and the median across runs.
#
# usage: hack/bench-alerts.sh
#
# Prints figures, not verdicts (benches/alerts.rs has the definitions). It exits non-zero
# when something broke (cluster did not start, operator died) or a run's counts were off
# (a non-200 reply, runs created != expected, writes in the settled window).
#
# Environment (defaults after the =):
#   BENCH_RUNS=3              storms, each in fresh namespaces
#   BENCH_NAMESPACES=20       namespaces per storm (every 4th Runbook has cooldown 1h)
#   BENCH_ALERTS=100          distinct firing alerts per storm
#   BENCH_REPEATS=10          POSTs of each alert
#   BENCH_GROUPS=10           values of the alerts' group label
#   BENCH_CONCURRENCY=32      POSTs in flight
#   BENCH_SETTLE=10           idle seconds after the runs finished, before the settled window
#   BENCH_WINDOW=30           seconds of the settled window
#   BENCH_TIMEOUT=600         seconds for any one wait
#   BENCH_CLUSTER=bench       cluster name for hack/cluster.sh (stopped at exit)
#   BENCH_NAMESPACE=bench-alerts   prefix of the namespaces <prefix>-r<run>-<i>
#   BENCH_PROBE_PORT=18092    operator probe/metrics port
#   BENCH_ALERTS_PORT=18093   the receiver's port (--alerts-addr 127.0.0.1:PORT)
#   BENCH_OPERATOR=path       use this operator binary instead of building
#                             target/release/runbook-operator with cargo
#   BENCH_CARGO_PROFILE=dev   build the bench binary without optimisation (quicker)
#   BENCH_OUT=dir             where logs go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1      leave the cluster (and namespaces) up at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-alerts
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

RUNS=${BENCH_RUNS:-3}
NAMESPACES=${BENCH_NAMESPACES:-20}
ALERTS=${BENCH_ALERTS:-100}
REPEATS=${BENCH_REPEATS:-10}
GROUPS_=${BENCH_GROUPS:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
SETTLE=${BENCH_SETTLE:-10}
WINDOW=${BENCH_WINDOW:-30}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-alerts}
PROBE_PORT=${BENCH_PROBE_PORT:-18092}
ALERTS_PORT=${BENCH_ALERTS_PORT:-18093}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-alerts.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-operator
FLOW_PREFIX=runbook-bench-op-
check_positive RUNS NAMESPACES ALERTS REPEATS GROUPS_ CONCURRENCY SETTLE WINDOW TIMEOUT PROBE_PORT ALERTS_PORT

# Every namespace of every storm, created up front so the FlowSchemas count the requests of
# their ServiceAccounts (the runs' steps act as them) as the operator's.
ALL_NAMESPACES=()
for ((r = 0; r < RUNS; r++)); do
	for ((i = 0; i < NAMESPACES; i++)); do
		ALL_NAMESPACES+=("$(printf '%s-r%d-%02d' "$NS" "$r" "$i")")
	done
done
RUNNER_NAMESPACES="${ALL_NAMESPACES[*]}"
KEEP_NOTE="namespaces $NS-r*"

delete_namespaces() {
	progress "deleting namespaces $NS-r*"
	kubectl delete namespace "${ALL_NAMESPACES[@]}" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "alert storm benchmark: runs=$RUNS alerts=$ALERTS x $REPEATS, $NAMESPACES namespaces, $GROUPS_ groups, $CONCURRENCY in flight (output: $OUT)"
build_binaries alerts "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/runbook-operator"
start_cluster_with_operator_identity
progress "creating ${#ALL_NAMESPACES[@]} namespaces"
printf -- '---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "${ALL_NAMESPACES[@]}" >"$OUT/namespaces.yaml"
kubectl apply -f "$OUT/namespaces.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "creating the namespaces failed"; }
NS_CREATED=1

# The receiver's bearer token: random, readable by this user only.
TOKEN_FILE=$OUT/alerts-token
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TOKEN_FILE")

check_port_free
if (exec 3<>"/dev/tcp/127.0.0.1/$ALERTS_PORT") 2>/dev/null; then
	die "port $ALERTS_PORT is in use; set BENCH_ALERTS_PORT"
fi
start_operator_as_user "starting the operator (all namespaces, receiver on 127.0.0.1:$ALERTS_PORT)" \
	--alerts-addr "127.0.0.1:$ALERTS_PORT" --alerts-token-file "$TOKEN_FILE"

# The API server's pid (hack/cluster.sh's pidfile), for its CPU seconds.
APISERVER_PID=$(cat "${RUNBOOK_OPERATOR_CLUSTER_DIR:-$REPO_ROOT/.cluster}/$CLUSTER/run/kube-apiserver.pid" 2>/dev/null || true)

rc=0
run_bench BENCH_OPERATOR_URL="$OP_URL" BENCH_OPERATOR_PID="$OP_PID" BENCH_APISERVER_PID="$APISERVER_PID" \
	BENCH_ALERTS_URL="http://127.0.0.1:$ALERTS_PORT" BENCH_ALERTS_TOKEN_FILE="$TOKEN_FILE" \
	BENCH_NAMESPACE="$NS" BENCH_RUNS="$RUNS" BENCH_NAMESPACES="$NAMESPACES" BENCH_ALERTS="$ALERTS" \
	BENCH_REPEATS="$REPEATS" BENCH_GROUPS="$GROUPS_" BENCH_CONCURRENCY="$CONCURRENCY" \
	BENCH_SETTLE="$SETTLE" BENCH_WINDOW="$WINDOW" BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" || rc=$?
((rc == 0)) || figures_or_die "$rc"
stop_operator
{
	summary_head "runbook-operator alert storm benchmark" "$RUNS runs of $ALERTS alerts x $REPEATS POSTs, $NAMESPACES namespaces, $CONCURRENCY in flight"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
((rc == 0)) || die "the benchmark failed (exit $rc); see above and $OUT"
progress "done in $(since "$T_BENCH")s"
