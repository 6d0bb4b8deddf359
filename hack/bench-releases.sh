#!/usr/bin/env bash
# Benchmark of BlueGreenReleases (the issue's words: "for one release and for 200 at once:
# p50/p99 from 'new slot fully available' to 'Service selector switched', from switch to
# 'EndpointSlices converged', and the whole release time for a template change with no
# validation steps; operator RSS with 200 releases; API writes for a settled release
# (target: zero)").
#
# usage: hack/bench-releases.sh
#        RELEASES=10 hack/bench-releases.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits
# non-zero only when something broke (cluster did not start, operator died, a
# wait timed out, a release never finished; the state of the releases that did
# not finish is printed). Progress goes to stderr (a line at least every ~15 s),
# the summary table to stdout (also saved as summary.txt in the output dir). The
# measuring is done by benches/releases.rs (its header has the exact
# definitions, and the summary repeats them):
#   - NAMESPACES namespaces, RELEASES BlueGreenReleases spread over them, each
#     with its own active Service (selector app: <name>), 2 replicas, no
#     prePromotion/postPromotion steps, scaleDownDelay 10s; kwok makes the pods
#     Ready and the EndpointSlice controller fills the Services' EndpointSlices
#   - one release alone: created, then its template changed SINGLE_ROUNDS times
#     one after the other; then all releases at once: the others created
#     together, then every template changed together
#   - per release and change, from watch events on the bench's clock: new slot
#     fully available -> Service selector switched, switch -> EndpointSlices
#     converged (only ready endpoints of the new slot), change -> TrafficSwitched,
#     change -> Healthy (the whole release, scaleDownDelay included): count, p50,
#     p99, max
#   - operator VmRSS idle, with RELEASES settled, peak while they change, VmHWM
#   - the operator's writes per release for a change, and in BENCH_QUIET s with
#     all releases settled (target 0): exact, by running the operator as the user
#     runbook-bench-releases-operator whose requests FlowSchemas
#     runbook-bench-bgr-* count; also its own api_writes metric
#
# Environment (defaults after the =):
#   RELEASES=200          BlueGreenReleases in all (also BENCH_RELEASES)
#   NAMESPACES=4          namespaces they are spread over (also BENCH_NAMESPACES)
#   SINGLE_ROUNDS=3       template changes of the lone release (also BENCH_SINGLE_ROUNDS)
#   BENCH_REPLICAS=2      spec.replicas of every release
#   BENCH_SCALE_DOWN_DELAY=10  the releases' scaleDownDelay, seconds
#   BENCH_QUIET=60        seconds of the settled interval whose writes are counted
#   BENCH_SETTLE=5        seconds idle before it
#   BENCH_TIMEOUT=600     seconds to wait for any single step
#   BENCH_CLUSTER=bench   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-releases   namespace prefix (namespaces are PREFIX-NN)
#   BENCH_PROBE_PORT=18092           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#                         (${CARGO_TARGET_DIR}/release/... when that is set)
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespaces) up at the end
#
# Uses the cluster named "bench" (API port 27443) unless BENCH_CLUSTER names another;
# it is stopped at exit. The operator watches all namespaces (no --namespace). Takes
# about 5 minutes with the defaults on a 2-core machine.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-releases
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

RELEASES=${RELEASES:-${BENCH_RELEASES:-200}}
NAMESPACES=${NAMESPACES:-${BENCH_NAMESPACES:-4}}
SINGLE_ROUNDS=${SINGLE_ROUNDS:-${BENCH_SINGLE_ROUNDS:-3}}
REPLICAS=${BENCH_REPLICAS:-2}
SCALE_DOWN_DELAY=${BENCH_SCALE_DOWN_DELAY:-10}
QUIET=${BENCH_QUIET:-60}
SETTLE=${BENCH_SETTLE:-5}
TIMEOUT=${BENCH_TIMEOUT:-600}
NS=${BENCH_NAMESPACE:-bench-releases}
PROBE_PORT=${BENCH_PROBE_PORT:-18092}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-releases.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-releases-operator
FLOW_PREFIX=runbook-bench-bgr-
NS_LABEL=bench.runbook.dev/releases

KEEP_NOTE="namespaces $NS-*"
check_positive RELEASES NAMESPACES SINGLE_ROUNDS REPLICAS SCALE_DOWN_DELAY QUIET SETTLE TIMEOUT PROBE_PORT
((NAMESPACES <= RELEASES && NAMESPACES <= 100)) || { echo "bench-releases: NAMESPACES must be at most RELEASES and 100" >&2; exit 2; }
((RELEASES <= 9999)) || { echo "bench-releases: RELEASES must be at most 9999" >&2; exit 2; }

# Not waited for: the cluster goes down anyway.
delete_namespaces() {
	progress "deleting namespaces $NS-* (not waiting)"
	kubectl delete namespace -l "$NS_LABEL" --wait=false >/dev/null 2>&1 ||
		progress "  (namespace deletion failed; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "BlueGreenRelease benchmark: releases=$RELEASES namespaces=$NAMESPACES replicas=$REPLICAS single-rounds=$SINGLE_ROUNDS scaleDownDelay=${SCALE_DOWN_DELAY}s quiet=${QUIET}s (output: $OUT)"

# ---------------------------------------------------------------------------
# binaries: the operator (release) and the bench (cargo bench profile)
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
build_binaries releases "$TARGET_DIR/release/runbook-operator"

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
	BENCH_RELEASES="$RELEASES" BENCH_NAMESPACES="$NAMESPACES" BENCH_SINGLE_ROUNDS="$SINGLE_ROUNDS" \
	BENCH_REPLICAS="$REPLICAS" BENCH_SCALE_DOWN_DELAY="$SCALE_DOWN_DELAY" BENCH_QUIET="$QUIET" \
	BENCH_SETTLE="$SETTLE" BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" || rc=$?
if ((rc != 0)); then
	figures_or_die "$rc"
fi
stop_operator
{
	summary_head "runbook-operator BlueGreenRelease benchmark" \
		"$RELEASES releases, $NAMESPACES namespaces, $REPLICAS replicas, scaleDownDelay ${SCALE_DOWN_DELAY}s"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	progress "---- the operator's warnings and errors (last 20; log: $OP_LOG) ----"
	grep -E 'WARN|ERROR' "$OP_LOG" | tail -n 20 >&2 || true
	die "some releases did not finish (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
