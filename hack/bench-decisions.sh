#!/usr/bin/env bash
# Benchmark of deciding runbooks (typed params, outputs between steps, `when`, query steps):
# BENCH_ROUNDS (3) rounds of BENCH_COUNT (50) concurrent runs of one Runbook -- scale-down to a
# typed integer param, a query step (count 3, interval 1s) against a real Prometheus scraping
# an exporter the bench serves, a `when`-true step that scales back to
# `{{ steps.scale-down.outputs.previousReplicas }}` and a `when`-false step -- then a settled
# window; and, as a peer on the same cluster, Prometheus and exporter, Argo Rollouts'
# AnalysisRun controller (`rollouts-controller --controllers analysis`, built from its Go
# module) measuring the same PromQL with count 3, interval 1s.
#
# usage: hack/bench-decisions.sh
#
# Prints figures (medians over the rounds), not verdicts; benches/decisions.rs has the
# definitions. It exits non-zero when something broke (cluster, operator, a run that did not
# succeed, writes in the settled window). When the operator answers NotImplemented for query
# steps, the query part is left out with a printed note; when the peer does not build or run,
# only the operator's figures are printed, with what failed.
#
# Environment (defaults after the =):
#   BENCH_ROUNDS=3            rounds (figures are medians over them)
#   BENCH_COUNT=50            concurrent runs per round (and Deployments; AnalysisRuns for the peer)
#   BENCH_SETTLE=10           idle seconds after the last round, before the settled window
#   BENCH_WINDOW=30           seconds of the settled window (operator writes must be 0)
#   BENCH_TIMEOUT=600         seconds for any one wait
#   BENCH_PEER=1              0: leave Argo Rollouts out
#   BENCH_CLUSTER=bench       cluster name for hack/cluster.sh (stopped at exit)
#   BENCH_NAMESPACE=bench-decisions   namespace of the runs and AnalysisRuns
#   BENCH_PROBE_PORT=18094    operator probe/metrics port
#   BENCH_OPERATOR=path       use this operator binary instead of building it with cargo
#   BENCH_CARGO_PROFILE=dev   build the bench binary without optimisation (quicker)
#   BENCH_OUT=dir             where logs go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1      leave the cluster (and namespace) up at the end
#   RUNBOOK_OPERATOR_CACHE    where the peer is built and kept (as hack/tools.sh)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench-decisions
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
COUNT=${BENCH_COUNT:-50}
SETTLE=${BENCH_SETTLE:-10}
WINDOW=${BENCH_WINDOW:-30}
TIMEOUT=${BENCH_TIMEOUT:-600}
PEER=${BENCH_PEER:-1}
NS=${BENCH_NAMESPACE:-bench-decisions}
# The runs act as the ServiceAccount `default` of $NS: its requests count as the operator's.
RUNNER_NAMESPACES=$NS
PROBE_PORT=${BENCH_PROBE_PORT:-18094}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-decisions.XXXXXX)}
mkdir -p "$OUT"
OP_USER=runbook-bench-operator
FLOW_PREFIX=runbook-bench-op-
KEEP_NOTE="namespace $NS"
check_positive ROUNDS COUNT SETTLE WINDOW TIMEOUT PROBE_PORT

# The peer: Argo Rollouts, whose controller runs AnalysisRuns (`--controllers analysis`).
# v1.10.2 needs Go >= 1.26.10: the go command takes the approved go1.27.3 toolchain from the
# Go module proxy (GOTOOLCHAIN) for this build only.
ARGO_ROLLOUTS_VERSION=v1.10.2
ARGO_GOTOOLCHAIN=go1.27.3
CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}
PEER_DIR=$CACHE_ROOT/argo-rollouts-$ARGO_ROLLOUTS_VERSION
PEER_BIN=$PEER_DIR/bin/rollouts-controller
# Why the peer is left out (empty: it runs).
PEER_NOTE=

delete_namespaces() {
	progress "deleting namespace $NS"
	kubectl delete namespace "$NS" --ignore-not-found --timeout=90s >/dev/null 2>&1 ||
		progress "  (namespace deletion did not finish; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds rollouts-controller and copies the Argo Rollouts CRDs from the module source into
# $PEER_DIR, once (a .stamp records when and how long); sets PEER_NOTE when that fails.
build_peer() {
	local t0=$SECONDS moddir log=$PEER_DIR/build.log
	if [[ -f $PEER_DIR/.stamp && -x $PEER_BIN ]]; then return 0; fi
	mkdir -p "$PEER_DIR/bin" "$PEER_DIR/crds"
	rm -f "$PEER_DIR/.stamp"
	progress "building Argo Rollouts $ARGO_ROLLOUTS_VERSION (rollouts-controller) from its Go module (log: $log)"
	hb_start "building rollouts-controller"
	if ! moddir=$(cd "$PEER_DIR" && GOTOOLCHAIN=$ARGO_GOTOOLCHAIN GO111MODULE=on go mod download -json \
		"github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" 2>"$log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || [[ -z $moddir || ! -d $moddir ]]; then
		hb_stop
		PEER_NOTE="go mod download github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION failed (log: $log)"
		return 0
	fi
	cp "$moddir"/manifests/crds/*-crd.yaml "$PEER_DIR/crds/"
	rm -rf "$PEER_DIR/src"
	cp -r "$moddir" "$PEER_DIR/src"
	chmod -R u+w "$PEER_DIR/src"
	if ! (cd "$PEER_DIR/src" && GOTOOLCHAIN=$ARGO_GOTOOLCHAIN CGO_ENABLED=0 GOFLAGS=-trimpath \
		go build -o "$PEER_BIN" -ldflags "-s -w" ./cmd/rollouts-controller) >>"$log" 2>&1; then
		hb_stop
		tail -n 20 "$log" >&2
		PEER_NOTE="go build ./cmd/rollouts-controller of argo-rollouts $ARGO_ROLLOUTS_VERSION failed (log: $log)"
		rm -rf "$PEER_DIR/src"
		return 0
	fi
	hb_stop
	rm -rf "$PEER_DIR/src"
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$PEER_DIR/.stamp"
	progress "built rollouts-controller in $((SECONDS - t0))s"
}

progress "deciding-runbook benchmark: rounds=$ROUNDS runs=$COUNT window=${WINDOW}s settle=${SETTLE}s (output: $OUT)"
build_binaries decisions "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/runbook-operator"
progress "Prometheus: hack/tools.sh build (a no-op once cached)"
"$SCRIPT_DIR/tools.sh" build >"$OUT/tools.log" 2>&1 || { tail -n 20 "$OUT/tools.log" >&2; die "hack/tools.sh build failed"; }
eval "$("$SCRIPT_DIR/tools.sh" env)"
[[ -x ${PROMETHEUS:-} ]] || die "hack/tools.sh env names no Prometheus binary"
if [[ $PEER == 1 ]]; then
	if command -v go >/dev/null; then build_peer; else PEER_NOTE="go is not installed"; fi
else
	PEER_NOTE="BENCH_PEER=0"
fi
[[ -z $PEER_NOTE ]] || progress "the peer is left out: $PEER_NOTE"

start_cluster_with_operator_identity
if [[ -z $PEER_NOTE ]]; then
	kubectl apply --server-side -f "$PEER_DIR/crds/" >>"$OUT/crds.log" 2>&1 &&
		kubectl wait --for=condition=Established crd/analysisruns.argoproj.io --timeout=60s >>"$OUT/crds.log" 2>&1 ||
		PEER_NOTE="applying the Argo Rollouts CRDs failed (log: $OUT/crds.log)"
fi
if ! kubectl get namespace "$NS" >/dev/null 2>&1; then
	kubectl create namespace "$NS" >/dev/null
fi
NS_CREATED=1

check_port_free
start_operator_as_user "starting the operator" --namespace "$NS"

rc=0
run_bench BENCH_OPERATOR_URL="$OP_URL" BENCH_OPERATOR_PID="$OP_PID" BENCH_NAMESPACE="$NS" \
	BENCH_COUNT="$COUNT" BENCH_ROUNDS="$ROUNDS" BENCH_WINDOW="$WINDOW" BENCH_SETTLE="$SETTLE" \
	BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" BENCH_PROMETHEUS="$PROMETHEUS" \
	BENCH_PEER_BIN="$([[ -z $PEER_NOTE ]] && echo "$PEER_BIN" || true)" BENCH_PEER_NOTE="$PEER_NOTE" \
	BENCH_PEER_VERSION="$ARGO_ROLLOUTS_VERSION" || rc=$?
((rc == 0)) || figures_or_die "$rc"
stop_operator
{
	summary_head "runbook-operator deciding-runbook benchmark" "BENCH_ROUNDS=$ROUNDS, $COUNT runs per round"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
((rc == 0)) || die "the benchmark failed (exit $rc); see above and $OUT"
progress "done in $(since "$T_BENCH")s"
