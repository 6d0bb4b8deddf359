#!/usr/bin/env bash
# Benchmark of leader failover (the issue's words: "leader failover time (kill to first write
# by the new leader)").
#
# usage: hack/bench-failover.sh
#        BENCH_ROUNDS=3 BENCH_LEASES=6/2 hack/bench-failover.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits non-zero only
# when something broke (cluster did not start, an operator died on its own, a wait timed
# out). Progress goes to stderr (a line at least every ~15 s), the figures to stdout (also
# saved as summary.txt in the output dir). The measuring is done by benches/failover.rs (its
# header has the exact definitions): two operator processes with leader election on one
# namespace; per Lease setting, BENCH_ROUNDS times: the leader is SIGKILLed in the middle of
# a run, a new run is created at once, and the bench times (from the kill, on watches)
#   - the Lease changing hands (and the Lease's acquireTime)
#   - the new leader's caches synced (/readyz ok)
#   - the first write by the new leader, the new run's first status, both runs done
# and checks the interrupted and the new run applied their scale steps once (a column).
#
# Environment (defaults after the =):
#   BENCH_ROUNDS=7        kills per Lease setting
#   BENCH_LEASES=15/5,6/2 Lease settings, DURATION/RENEW-BEFORE seconds (the default and a short one)
#   BENCH_TIMEOUT=600     seconds to wait for any single step
#   BENCH_CLUSTER=benchha cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-failover   namespace of the runs and of the Leases
#   BENCH_PROBE_PORT=18094           probe port of the first process (the second: +1)
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#                         (${CARGO_TARGET_DIR}/release/... when that is set)
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the cluster (and namespace) up at the end
#
# The operators run out-of-cluster with the cluster's admin credentials (RBAC is not what
# this measures; hack/bench-scale.sh runs under the chart's). Takes about 3.5 minutes with the
# defaults on a 2-core machine (7 x ~17 s with the 15 s Lease, 7 x ~8 s with the 6 s one).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-benchha}
BENCH_TAG=bench-failover
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

ROUNDS=${BENCH_ROUNDS:-7}
LEASES=${BENCH_LEASES:-15/5,6/2}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-failover}
PROBE_PORT=${BENCH_PROBE_PORT:-18094}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-failover.XXXXXX)}
mkdir -p "$OUT"

KEEP_NOTE="namespace $NS"
check_positive ROUNDS TIMEOUT PROBE_PORT
[[ $LEASES =~ ^[0-9]+/[0-9]+(,[0-9]+/[0-9]+)*$ ]] || { echo "bench-failover: BENCH_LEASES must look like 15/5,6/2 (got '$LEASES')" >&2; exit 2; }

# Not waited for: a run left with its finalizer (no operator is left to remove it) would
# hold the namespace, and the cluster goes down anyway.
delete_namespaces() {
	progress "deleting namespace $NS (not waiting)"
	kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 ||
		progress "  (namespace deletion failed; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "leader failover benchmark: rounds=$ROUNDS leases=$LEASES (output: $OUT)"

TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
build_binaries failover "$TARGET_DIR/release/runbook-operator"

progress "hack/cluster.sh up $CLUSTER"
cluster_up "$OUT/cluster-up.log"
use_cluster
progress "installing CRDs"
install_crds
NS_CREATED=1

check_port_free
PROBE_PORT=$((PROBE_PORT + 1)) check_port_free

rc=0
run_bench BENCH_OPERATOR_URL="http://127.0.0.1:$PROBE_PORT" BENCH_OPERATOR_BIN="$OP_BIN" \
	BENCH_NAMESPACE="$NS" BENCH_ROUNDS="$ROUNDS" BENCH_LEASES="$LEASES" \
	BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" || rc=$?
OP_LOG= # the newest operator log, for figures_or_die
for f in "$OUT"/operator-*.log; do
	if [[ -e $f && (-z $OP_LOG || $f -nt $OP_LOG) ]]; then OP_LOG=$f; fi
done
if ((rc != 0)); then
	figures_or_die "$rc"
fi
{
	summary_head "runbook-operator leader failover benchmark" "BENCH_ROUNDS=$ROUNDS, leases $LEASES"
	printf 'uptime: %s\n' "$(uptime)"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "the benchmark failed (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
