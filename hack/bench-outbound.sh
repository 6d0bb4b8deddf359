#!/usr/bin/env bash
# Benchmark of http steps off the reconcile path: an unrelated run's latency in one namespace,
# alone and while BENCH_BLACKHOLED (100) runs in another namespace call a URL that accepts
# connections and never answers. One operator watches every namespace, so both namespaces
# share its controllers (and, before the outbound pool, its 16 reconcile slots).
#
# usage: hack/bench-outbound.sh
#
# Prints figures, not verdicts (benches/outbound.rs has the definitions). It exits non-zero
# only when something broke (cluster did not start, operator died, a probe run failed).
#
# Environment (defaults after the =):
#   BENCH_BLACKHOLED=100      runs calling the blackholed URL
#   BENCH_SAMPLES=20          probe runs per phase, one after the other
#   BENCH_SAMPLE_TIMEOUT=60   seconds a probe run may take before it counts as timed out
#   BENCH_TIMEOUT=600         seconds for any other wait
#   BENCH_CLUSTER=bench       cluster name for hack/cluster.sh (stopped at exit)
#   BENCH_NAMESPACE=bench-outbound   prefix of the namespaces <prefix>-stuck and <prefix>-other
#   BENCH_PROBE_PORT=18091    operator probe/metrics port
#   BENCH_OPERATOR=path       use this operator binary instead of building
#                             target/release/runbook-operator with cargo (e.g. an earlier
#                             commit's, for a side-by-side figure)
#   BENCH_OUT=dir             where logs go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1      leave the cluster (and namespaces) up at the end
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-outbound
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

BLACKHOLED=${BENCH_BLACKHOLED:-100}
SAMPLES=${BENCH_SAMPLES:-20}
SAMPLE_TIMEOUT=${BENCH_SAMPLE_TIMEOUT:-60}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-outbound}
RUNNER_NAMESPACES="$NS-stuck $NS-other"
PROBE_PORT=${BENCH_PROBE_PORT:-18091}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-outbound.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-operator
FLOW_PREFIX=runbook-bench-op-

KEEP_NOTE="namespaces $NS-stuck and $NS-other"
check_positive BLACKHOLED SAMPLES SAMPLE_TIMEOUT TIMEOUT PROBE_PORT

delete_namespaces() {
	progress "deleting namespaces $NS-stuck and $NS-other"
	kubectl delete namespace "$NS-stuck" "$NS-other" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "outbound benchmark: blackholed=$BLACKHOLED samples=$SAMPLES (output: $OUT)"
build_binaries outbound "$REPO_ROOT/target/release/runbook-operator"
start_cluster_with_operator_identity
for ns in "$NS-stuck" "$NS-other"; do
	kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns" >/dev/null
done
NS_CREATED=1

check_port_free
# Every namespace: one set of controllers for both namespaces of the bench.
start_operator_as_user "starting the operator (all namespaces)"

rc=0
run_bench BENCH_OPERATOR_URL="$OP_URL" BENCH_OPERATOR_PID="$OP_PID" BENCH_NAMESPACE="$NS" \
	BENCH_BLACKHOLED="$BLACKHOLED" BENCH_SAMPLES="$SAMPLES" BENCH_SAMPLE_TIMEOUT="$SAMPLE_TIMEOUT" \
	BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" || rc=$?
((rc == 0)) || figures_or_die "$rc"
stop_operator
{
	summary_head "runbook-operator outbound benchmark" "$BLACKHOLED blackholed runs, $SAMPLES samples per phase"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
((rc == 0)) || die "the benchmark failed (exit $rc); see above and $OUT"
progress "done in $(since "$T_BENCH")s"
