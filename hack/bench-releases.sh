#!/usr/bin/env bash
# Benchmark of BlueGreenReleases (the issue's words: "for one release and for 200 at once:
# p50/p99 from 'new slot fully available' to 'Service selector switched', from switch to
# 'EndpointSlices converged', and the whole release time for a template change with no
# validation steps; operator RSS with 200 releases; API writes for a settled release
# (target: zero)").
#
# usage: hack/bench-releases.sh                      # or: make bench-releases
#        SIZES="1 20" hack/bench-releases.sh        # a quick run
#        SIZES="1 100 1000" ARGO_ROLLOUTS_BIN=~/.cache/runbook-operator/argo-rollouts-v1.10.2/bin/rollouts-controller \
#            make bench-releases                    # beside Argo Rollouts
#
# Also (issue 20, "measured beside Argo Rollouts"): the floor -- on the same cluster, the bench
# itself watching a Deployment become available and PATCHing a Service's selector (one watch
# event + one PATCH), p50/p99 over BENCH_FLOOR_ROUNDS; the releases changed at once for each
# of SIZES (1 = the lone release, changed ROUNDS times); operator RSS idle and settled at each
# size and the RSS slope per settled release (least squares, KiB/release); API requests per
# reconcile when settled; and, when ARGO_ROLLOUTS_BIN names a rollouts-controller binary (never
# built here; hack/bench-decisions.sh builds one into the module cache), the same shapes as
# Argo Rollouts (blueGreen, autoPromotionEnabled, scaleDownDelaySeconds, same replicas; its
# CRDs from ../crds next to the binary, i.e. the module cache) in the same run, with the
# ratios ours/theirs of p50/p99 and of RSS per release.
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
#   SIZES="1 100 1000"    releases changed at once, each size in turn (also BENCH_SIZES);
#                         RELEASES=N alone means SIZES="1 N"
#   ROUNDS=3              template changes of the lone release (also SINGLE_ROUNDS)
#   BENCH_FLOOR_ROUNDS=20 samples of the floor
#   ARGO_ROLLOUTS_BIN=    the peer's rollouts-controller (empty: no peer)
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

if [[ -n ${RELEASES:-${BENCH_RELEASES:-}} && -z ${SIZES:-${BENCH_SIZES:-}} ]]; then
	SIZES="1 ${RELEASES:-$BENCH_RELEASES}"
fi
SIZES=${SIZES:-${BENCH_SIZES:-1 100 1000}}
RELEASES=1
for size in $SIZES; do
	[[ $size =~ ^[0-9]+$ && $size -gt 0 ]] || { echo "bench-releases: SIZES must hold positive integers (got '$SIZES')" >&2; exit 2; }
	if ((size > RELEASES)); then RELEASES=$size; fi
done
NAMESPACES=${NAMESPACES:-${BENCH_NAMESPACES:-4}}
if ((NAMESPACES > RELEASES)); then NAMESPACES=$RELEASES; fi
SINGLE_ROUNDS=${ROUNDS:-${SINGLE_ROUNDS:-${BENCH_SINGLE_ROUNDS:-3}}}
FLOOR_ROUNDS=${BENCH_FLOOR_ROUNDS:-20}
PEER_BIN=${ARGO_ROLLOUTS_BIN:-}
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
check_positive RELEASES NAMESPACES SINGLE_ROUNDS FLOOR_ROUNDS REPLICAS SCALE_DOWN_DELAY QUIET SETTLE TIMEOUT PROBE_PORT
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

if [[ -n $PEER_BIN ]]; then
	[[ -x $PEER_BIN ]] || { echo "bench-releases: ARGO_ROLLOUTS_BIN=$PEER_BIN is not an executable" >&2; exit 2; }
	PEER_CRDS=$(cd "$(dirname "$PEER_BIN")/../crds" 2>/dev/null && pwd) ||
		{ echo "bench-releases: no Argo Rollouts CRDs in $(dirname "$PEER_BIN")/../crds (the module cache hack/bench-decisions.sh fills)" >&2; exit 2; }
fi

progress "BlueGreenRelease benchmark: sizes=$SIZES releases=$RELEASES namespaces=$NAMESPACES replicas=$REPLICAS single-rounds=$SINGLE_ROUNDS scaleDownDelay=${SCALE_DOWN_DELAY}s quiet=${QUIET}s (output: $OUT)"

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

if [[ -n $PEER_BIN ]]; then
	progress "installing the Argo Rollouts CRDs from $PEER_CRDS"
	kubectl apply --server-side -f "$PEER_CRDS/" >>"$OUT/crds.log" 2>&1 ||
		die "applying the Argo Rollouts CRDs failed (log: $OUT/crds.log)"
	# Not `kubectl wait`: it fails while a fresh CRD has no status.conditions yet.
	for ((i = 0; i < 120; i++)); do
		established=$(kubectl get crd rollouts.argoproj.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>>"$OUT/crds.log" || true)
		[[ $established == True ]] && break
		sleep 0.5
	done
	[[ $established == True ]] || die "the Rollout CRD is not Established after 60s (log: $OUT/crds.log)"
fi

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
	BENCH_SIZES="$SIZES" BENCH_FLOOR_ROUNDS="$FLOOR_ROUNDS" BENCH_PEER_BIN="$PEER_BIN" \
	BENCH_RELEASES="$RELEASES" BENCH_NAMESPACES="$NAMESPACES" BENCH_SINGLE_ROUNDS="$SINGLE_ROUNDS" \
	BENCH_REPLICAS="$REPLICAS" BENCH_SCALE_DOWN_DELAY="$SCALE_DOWN_DELAY" BENCH_QUIET="$QUIET" \
	BENCH_SETTLE="$SETTLE" BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" || rc=$?
if ((rc != 0)); then
	figures_or_die "$rc"
fi
stop_operator
{
	summary_head "runbook-operator BlueGreenRelease benchmark" \
		"sizes $SIZES, $NAMESPACES namespaces, $REPLICAS replicas, scaleDownDelay ${SCALE_DOWN_DELAY}s"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	progress "---- the operator's warnings and errors (last 20; log: $OP_LOG) ----"
	grep -E 'WARN|ERROR' "$OP_LOG" | tail -n 20 >&2 || true
	die "some releases did not finish (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
