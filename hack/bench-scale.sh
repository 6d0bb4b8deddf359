#!/usr/bin/env bash
# Benchmark of the operator at scale under the chart's RBAC (the issue's words: "operator RSS
# and CPU with every example plus 1,000 objects of each kind under the chart's RBAC").
#
# usage: hack/bench-scale.sh
#        BENCH_COUNT=200 BENCH_ROUNDS=1 hack/bench-scale.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits non-zero only
# when something broke (cluster did not start, the chart does not render, the operator died,
# a wait timed out). Progress goes to stderr (a line at least every ~15 s), the figures to
# stdout (also saved as summary.txt in the output dir). The measuring is done by
# benches/scale.rs (its header has the exact definitions): per round, in fresh namespaces
# and with a fresh operator, examples/ plus BENCH_COUNT objects of each of the five kinds;
# time to settle, operator VmRSS (settled, peak, VmHWM), CPU seconds in the load phase and
# in a quiet interval, writes and reconciles in the quiet interval (target 0 writes).
#
# The chart's RBAC: `helm template rb charts/runbook-operator -n runbook-system` (cluster-wide
# mode, the chart's defaults) is rendered; its namespace, ServiceAccount and RBAC objects are
# applied (not its Deployment: the operator runs out-of-cluster), and the operator runs with a
# copy of the admin kubeconfig whose user has `as: system:serviceaccount:runbook-system:SA`
# (SA read from the rendered ServiceAccount). `kubectl auth whoami` and, from the bench,
# kube-rs's own SelfSubjectReview check the identity. FlowSchemas runbook-bench-scale-* (on
# the exempt level) count that identity's requests by kind.
#
# Environment (defaults after the =):
#   BENCH_COUNT=1000      objects of each kind (Runbook, RunbookRun, MaintenanceWindow,
#                         BlueGreenRelease, BackupPolicy); per kind BENCH_RUNBOOKS,
#                         BENCH_RUNS, BENCH_WINDOWS, BENCH_RELEASES, BENCH_POLICIES
#   BENCH_NAMESPACES=10   namespaces they are spread over
#   BENCH_ROUNDS=3        rounds (fresh namespaces and operator each)
#   BENCH_QUIET=60        seconds of the quiet interval
#   BENCH_SETTLE=10       seconds idle before it
#   BENCH_PARALLEL=32     creates in flight
#   BENCH_TIMEOUT=900     seconds to wait for any single step
#   BENCH_KCM_QPS=100     kube-controller-manager's --kube-api-qps (burst twice that), so
#                         1,000 release slot Deployments roll out in reasonable time; 0 keeps
#                         its default (20)
#   HELM=path             helm binary (default: from `hack/tools.sh env`, else PATH)
#   BENCH_RELEASE_NAMESPACE=runbook-system   namespace the chart is rendered for
#   BENCH_CHART_RELEASE=rb                   release name it is rendered with (the
#                         ServiceAccount's name follows it: rb-runbook-operator)
#   BENCH_CLUSTER=benchscale cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-scale      namespace prefix (namespaces PREFIX-rR-NN, PREFIX-rR-examples)
#   BENCH_PROBE_PORT=18096           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#                         (${CARGO_TARGET_DIR}/release/... when that is set)
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the cluster up at the end
#
# Heavy: per round about 6,000 objects plus 1,000 slot Deployments and their pods. Takes about
# 30 minutes with the defaults on a 2-core machine (a round: ~1.5 min of creates, 3-9 min to
# settle, 70 s quiet, ~2 min deleting its namespaces); the summary says what ran.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-benchscale}
BENCH_TAG=bench-scale
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

COUNT=${BENCH_COUNT:-1000}
NAMESPACES=${BENCH_NAMESPACES:-10}
ROUNDS=${BENCH_ROUNDS:-3}
QUIET=${BENCH_QUIET:-60}
SETTLE=${BENCH_SETTLE:-10}
PARALLEL=${BENCH_PARALLEL:-32}
TIMEOUT=${BENCH_TIMEOUT:-900}
KCM_QPS=${BENCH_KCM_QPS:-100}
RELEASE_NS=${BENCH_RELEASE_NAMESPACE:-runbook-system}
CHART_RELEASE=${BENCH_CHART_RELEASE:-rb}
NS=${BENCH_NAMESPACE:-bench-scale}
PROBE_PORT=${BENCH_PROBE_PORT:-18096}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-scale.XXXXXX)}
mkdir -p "$OUT"
FLOW_PREFIX=runbook-bench-scale-
CHART=$REPO_ROOT/charts/runbook-operator

KEEP_NOTE="namespaces $NS-*"
check_positive COUNT NAMESPACES ROUNDS QUIET SETTLE PARALLEL TIMEOUT PROBE_PORT
[[ $KCM_QPS =~ ^[0-9]+$ ]] || { echo "bench-scale: BENCH_KCM_QPS must be a number (got '$KCM_QPS')" >&2; exit 2; }

# The bench deletes each round's namespaces itself; whatever is left goes with the cluster.
delete_namespaces() { :; }
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "scale benchmark: count=$COUNT per kind, namespaces=$NAMESPACES rounds=$ROUNDS quiet=${QUIET}s (output: $OUT)"

# ---------------------------------------------------------------------------
# helm and the chart
# ---------------------------------------------------------------------------
if [[ -z ${HELM:-} ]]; then
	if [[ -x $SCRIPT_DIR/tools.sh ]] && "$SCRIPT_DIR/tools.sh" paths >/dev/null 2>&1; then
		eval "$("$SCRIPT_DIR/tools.sh" env)"
	fi
	HELM=${HELM:-$(command -v helm || true)}
fi
[[ -n $HELM && -x $HELM ]] || die "no helm: run hack/tools.sh build, or set HELM"
[[ -f $CHART/Chart.yaml ]] || die "no chart at $CHART"
# ---------------------------------------------------------------------------
# binaries, cluster, CRDs, RBAC, the operator's kubeconfig and FlowSchemas
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
build_binaries scale "$TARGET_DIR/release/runbook-operator"

if ((KCM_QPS > 0)); then
	export KCM_API_QPS=$KCM_QPS
fi
progress "hack/cluster.sh up $CLUSTER${KCM_API_QPS:+ (KCM_API_QPS=$KCM_API_QPS)}"
cluster_up "$OUT/cluster-up.log"
use_cluster
# helm's built-in Kubernetes version is too old for the chart's kubeVersion: the cluster's.
KUBE_SERVER=$(kubectl get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')
progress "rendering the chart: helm template $CHART_RELEASE charts/runbook-operator -n $RELEASE_NS --kube-version $KUBE_SERVER"
"$HELM" template "$CHART_RELEASE" "$CHART" -n "$RELEASE_NS" --kube-version "$KUBE_SERVER" >"$OUT/chart.yaml" 2>"$OUT/helm.log" || { cat "$OUT/helm.log" >&2; die "helm template failed"; }
# The RBAC part: ServiceAccount, (Cluster)Roles and their bindings.
awk '
	function flush() { if (keep) printf "---\n%s", doc; doc = ""; keep = 0 }
	/^---/ { flush(); next }
	{ doc = doc $0 "\n" }
	/^kind: (ServiceAccount|ClusterRole|ClusterRoleBinding|Role|RoleBinding)$/ { keep = 1 }
	END { flush() }' "$OUT/chart.yaml" >"$OUT/chart-rbac.yaml"
SA=$(awk '/^kind: ServiceAccount$/ { sa = 1 } sa && /^  name: / { print $2; exit }' "$OUT/chart-rbac.yaml")
[[ -n $SA ]] || die "the rendered chart has no ServiceAccount ($OUT/chart.yaml)"
OP_USER=system:serviceaccount:$RELEASE_NS:$SA
progress "chart RBAC: $(grep -c '^kind:' "$OUT/chart-rbac.yaml") objects ($(grep '^kind:' "$OUT/chart-rbac.yaml" | sort | uniq -c | awk '{ printf "%s%s %s", s, $1, $3; s = ", " }')); operator user $OP_USER"

progress "installing CRDs, the chart's RBAC and FlowSchemas $FLOW_PREFIX*"
install_crds
kubectl create namespace "$RELEASE_NS" --dry-run=client -o yaml | kubectl apply -f - >>"$OUT/crds.log" 2>&1
kubectl apply -n "$RELEASE_NS" -f "$OUT/chart-rbac.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying the chart's RBAC failed"; }
token_operator_user "$RELEASE_NS" "$SA"
grant_runner_rights
# Two spot checks of least privilege, printed (the chart owns the rules).
progress "operator identity: $OP_USER; can it list secrets? $(kubectl --kubeconfig "$OP_KUBECONFIG" auth can-i list secrets -A 2>/dev/null || true); patch deployments? $(kubectl --kubeconfig "$OP_KUBECONFIG" auth can-i patch deployments -A 2>/dev/null || true)"
check_port_free

rc=0
run_bench BENCH_OPERATOR_URL="http://127.0.0.1:$PROBE_PORT" BENCH_OPERATOR_BIN="$OP_BIN" \
	BENCH_OPERATOR_KUBECONFIG="$OP_KUBECONFIG" BENCH_IDENTITY="$OP_USER" \
	BENCH_EXAMPLES="$REPO_ROOT/examples" BENCH_NAMESPACE="$NS" BENCH_NAMESPACES="$NAMESPACES" \
	BENCH_COUNT="$COUNT" BENCH_ROUNDS="$ROUNDS" BENCH_QUIET="$QUIET" BENCH_SETTLE="$SETTLE" \
	BENCH_PARALLEL="$PARALLEL" BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" \
	${BENCH_RUNBOOKS:+BENCH_RUNBOOKS="$BENCH_RUNBOOKS"} ${BENCH_RUNS:+BENCH_RUNS="$BENCH_RUNS"} \
	${BENCH_WINDOWS:+BENCH_WINDOWS="$BENCH_WINDOWS"} ${BENCH_RELEASES:+BENCH_RELEASES="$BENCH_RELEASES"} \
	${BENCH_POLICIES:+BENCH_POLICIES="$BENCH_POLICIES"} || rc=$?
OP_LOG= # the newest operator log, for figures_or_die
for f in "$OUT"/operator-*.log; do
	if [[ -e $f && (-z $OP_LOG || $f -nt $OP_LOG) ]]; then OP_LOG=$f; fi
done
if ((rc != 0)); then
	figures_or_die "$rc"
fi
{
	summary_head "runbook-operator scale benchmark (chart RBAC)" \
		"BENCH_ROUNDS=$ROUNDS, BENCH_COUNT=$COUNT${BENCH_RELEASES:+, releases $BENCH_RELEASES}${BENCH_RUNS:+, runs $BENCH_RUNS}, $NAMESPACES namespaces, operator as $OP_USER"
	printf 'uptime: %s\n' "$(uptime)"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "the benchmark failed (exit $rc); see above and $OUT"
fi
progress "done in $(since "$T_BENCH")s"
