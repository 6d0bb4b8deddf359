#!/usr/bin/env bash
# Benchmark of `kubectl runbook dashboard` in a real browser (headless Chromium through
# chromedriver): page load times with 1,000 runs and 200 windows in the namespace, the
# plugin's RSS while serving, the API requests a page view costs, and Argo Rollouts'
# dashboard as the peer.
#
# usage: hack/bench-dashboard.sh
#        BENCH_ROUNDS=1 BENCH_LOADS=3 hack/bench-dashboard.sh   # a quick run
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits non-zero only
# when something broke. Progress goes to stderr, the figures to stdout (also saved as
# summary.txt in the output dir). The measuring is done by benches/dashboard.rs (its header
# has the exact definitions): the namespace is seeded with Runbooks, RunbookRuns whose status
# is written through the status subresource (no operator runs) and MaintenanceWindows, plus
# the examples' BlueGreenRelease and BackupPolicies (no status: no operator); per round a
# fresh dashboard and browser session, the cold first load of Now, then BENCH_LOADS loads of
# each page (first contentful paint, data rendered, server time and size of the page's JSON,
# API server requests per view); medians over BENCH_ROUNDS; RSS idle, after one pass, after
# serving, and against the number of runs (1,000 vs 200).
#
# Environment (defaults after the =):
#   BENCH_RUNS=1000 BENCH_WINDOWS=200 BENCH_RUNBOOKS=10   what the namespace holds
#   BENCH_ROUNDS=3        rounds (fresh dashboard and browser each)
#   BENCH_LOADS=10        warm loads per page and round
#   BENCH_PARALLEL=32     creates in flight
#   BENCH_TIMEOUT=120     seconds for any one wait
#   BENCH_CLUSTER=benchdash   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-dashboard   the namespace (the peer's: NAMESPACE-peer)
#   BENCH_PLUGIN=path     use this kubectl-runbook binary instead of building
#                         target/release/kubectl-runbook (${CARGO_TARGET_DIR}/release/...)
#   BENCH_CHROMEDRIVER=/usr/bin/chromedriver   BENCH_DRIVER_PORT=19515
#   BENCH_PEER=1          0 leaves Argo Rollouts' dashboard out
#   BENCH_ROLLOUTS=200    Rollouts for the peer   BENCH_PEER_PORT=19516
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the cluster up at the end
#
# The peer: `kubectl-argo-rollouts` v1.10.2, built once from its Go module into the cache
# (~/.cache/runbook-operator/argo-rollouts-v1.10.2/bin, next to the decisions benchmark's
# rollouts-controller) with GOTOOLCHAIN=go1.27.3. Its UI needs a yarn build, which is not
# available offline: the bench says whether it serves one and times its JSON endpoint
# /api/v1/rollouts/<ns>/info with a plain HTTP client (and ours the same way).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-benchdash}
BENCH_TAG=bench-dashboard
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

ROUNDS=${BENCH_ROUNDS:-3}
LOADS=${BENCH_LOADS:-10}
TIMEOUT=${BENCH_TIMEOUT:-120}
NS=${BENCH_NAMESPACE:-bench-dashboard}
PEER=${BENCH_PEER:-1}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
PROBE_PORT=${BENCH_DRIVER_PORT:-19515} # checked free like the operator's port elsewhere
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench-dashboard.XXXXXX)}
mkdir -p "$OUT"
KEEP_NOTE="namespace $NS"
check_positive ROUNDS LOADS TIMEOUT PROBE_PORT

ARGO_ROLLOUTS_VERSION=v1.10.2
ARGO_GOTOOLCHAIN=go1.27.3
CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}
PEER_DIR=$CACHE_ROOT/argo-rollouts-$ARGO_ROLLOUTS_VERSION
PEER_BIN=$PEER_DIR/bin/kubectl-argo-rollouts
PEER_NOTE=

# The cluster goes down with everything in it.
delete_namespaces() { :; }
trap cleanup EXIT
trap 'exit 130' INT TERM

progress "dashboard benchmark: rounds=$ROUNDS loads=$LOADS runs=${BENCH_RUNS:-1000} windows=${BENCH_WINDOWS:-200} (output: $OUT)"
CHROMEDRIVER=${BENCH_CHROMEDRIVER:-/usr/bin/chromedriver}
[[ -x $CHROMEDRIVER ]] || die "no chromedriver at $CHROMEDRIVER: install chromium and chromium-driver (Debian), or set BENCH_CHROMEDRIVER"

# Builds kubectl-argo-rollouts from the Go module (once); sets PEER_NOTE when that fails.
build_peer() {
	local t0=$SECONDS moddir log=$PEER_DIR/build-plugin.log
	if [[ -x $PEER_BIN ]]; then return 0; fi
	mkdir -p "$PEER_DIR/bin" "$PEER_DIR/crds"
	progress "building Argo Rollouts $ARGO_ROLLOUTS_VERSION (kubectl-argo-rollouts) from its Go module (log: $log)"
	hb_start "building kubectl-argo-rollouts"
	if ! moddir=$(cd "$PEER_DIR" && GOTOOLCHAIN=$ARGO_GOTOOLCHAIN GO111MODULE=on go mod download -json \
		"github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" 2>"$log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || [[ -z $moddir || ! -d $moddir ]]; then
		hb_stop
		PEER_NOTE="go mod download github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION failed (log: $log)"
		return 0
	fi
	cp "$moddir"/manifests/crds/*-crd.yaml "$PEER_DIR/crds/"
	rm -rf "$OUT/peer-src"
	cp -r "$moddir" "$OUT/peer-src"
	chmod -R u+w "$OUT/peer-src"
	if ! (cd "$OUT/peer-src" && GOTOOLCHAIN=$ARGO_GOTOOLCHAIN CGO_ENABLED=0 GOFLAGS=-trimpath \
		go build -o "$PEER_BIN" -ldflags "-s -w" ./cmd/kubectl-argo-rollouts) >>"$log" 2>&1; then
		hb_stop
		tail -n 20 "$log" >&2
		PEER_NOTE="go build ./cmd/kubectl-argo-rollouts of argo-rollouts $ARGO_ROLLOUTS_VERSION failed (log: $log)"
		rm -rf "$OUT/peer-src"
		return 0
	fi
	hb_stop
	rm -rf "$OUT/peer-src"
	progress "built kubectl-argo-rollouts in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$REPO_ROOT/$TARGET_DIR
if [[ -n ${BENCH_PLUGIN:-} ]]; then
	PLUGIN_BIN=$BENCH_PLUGIN
	progress "using plugin binary $PLUGIN_BIN (BENCH_PLUGIN)"
else
	PLUGIN_BIN=$TARGET_DIR/release/kubectl-runbook
fi
progress "building: ${BENCH_PLUGIN:+(plugin given) }cargo bench --locked --bench dashboard --no-run (log: $OUT/cargo-build.log)"
hb_start "building"
rc=0
(
	cd "$REPO_ROOT"
	if [[ -z ${BENCH_PLUGIN:-} ]]; then cargo build --release --locked --bin kubectl-runbook; fi
	cargo bench --locked --profile "${BENCH_CARGO_PROFILE:-bench}" --bench dashboard --no-run --message-format=json >"$OUT/cargo-bench.json"
) >"$OUT/cargo-build.log" 2>&1 || rc=$?
hb_stop
if ((rc != 0)); then
	tail -n 30 "$OUT/cargo-build.log" >&2
	die "building failed (exit $rc)"
fi
[[ -x $PLUGIN_BIN ]] || die "plugin binary $PLUGIN_BIN is missing"
BENCH_BIN=$(grep '"reason":"compiler-artifact"' "$OUT/cargo-bench.json" | grep '"kind":\["bench"\]' |
	grep '"name":"dashboard"' | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4 || true)
[[ -n $BENCH_BIN && -x $BENCH_BIN ]] || die "cannot find the bench executable in $OUT/cargo-bench.json"
progress "plugin: $PLUGIN_BIN; bench: $BENCH_BIN"

if [[ $PEER == 1 ]]; then
	if [[ -x $PEER_BIN ]] || command -v go >/dev/null; then build_peer; else PEER_NOTE="go is not installed"; fi
else
	PEER_NOTE="BENCH_PEER=0"
fi
if [[ -z $PEER_NOTE && ! -f $PEER_DIR/crds/rollout-crd.yaml ]]; then PEER_NOTE="no Rollout CRD in $PEER_DIR/crds"; fi
[[ -z $PEER_NOTE ]] || progress "the peer is left out: $PEER_NOTE"

# ---------------------------------------------------------------------------
# cluster, CRDs, the namespace
# ---------------------------------------------------------------------------
progress "hack/cluster.sh up $CLUSTER"
cluster_up "$OUT/cluster-up.log"
use_cluster
progress "installing CRDs"
install_crds
# Established, retried: right after the apply the CRD has no conditions yet and kubectl wait
# refuses it instead of waiting.
rollout_crd() {
	local i
	kubectl apply --server-side -f "$PEER_DIR/crds/rollout-crd.yaml" || return 1
	for ((i = 0; i < 30; i++)); do
		kubectl wait --for=condition=Established crd/rollouts.argoproj.io --timeout=60s && return 0
		sleep 1
	done
	return 1
}
if [[ -z $PEER_NOTE ]]; then
	rollout_crd >>"$OUT/crds.log" 2>&1 || PEER_NOTE="applying the Argo Rollouts CRD failed (log: $OUT/crds.log)"
fi
kubectl create namespace "$NS" >/dev/null
NS_CREATED=1
# The Releases and Backups pages: the examples' release and policies (no operator: no status).
for f in blue-green-release daily-backup redis-backup vector-snapshot; do
	kubectl apply -n "$NS" -f "$REPO_ROOT/examples/$f.yaml" >>"$OUT/examples.log" 2>&1 ||
		{ tail -n 20 "$OUT/examples.log" >&2; die "applying examples/$f.yaml failed"; }
done
check_port_free

rc=0
run_bench BENCH_PLUGIN_BIN="$PLUGIN_BIN" BENCH_NAMESPACE="$NS" BENCH_ROUNDS="$ROUNDS" BENCH_LOADS="$LOADS" \
	BENCH_TIMEOUT="$TIMEOUT" BENCH_OUT="$OUT" BENCH_CHROMEDRIVER="$CHROMEDRIVER" BENCH_DRIVER_PORT="$PROBE_PORT" \
	${PEER_NOTE:+BENCH_PEER_NOTE="$PEER_NOTE"} BENCH_PEER_BIN="$PEER_BIN" \
	${BENCH_RUNS:+BENCH_RUNS="$BENCH_RUNS"} ${BENCH_WINDOWS:+BENCH_WINDOWS="$BENCH_WINDOWS"} \
	${BENCH_RUNBOOKS:+BENCH_RUNBOOKS="$BENCH_RUNBOOKS"} ${BENCH_PARALLEL:+BENCH_PARALLEL="$BENCH_PARALLEL"} \
	${BENCH_ROLLOUTS:+BENCH_ROLLOUTS="$BENCH_ROLLOUTS"} ${BENCH_PEER_PORT:+BENCH_PEER_PORT="$BENCH_PEER_PORT"} || rc=$?
{
	echo
	printf '== kubectl runbook dashboard benchmark  %s  (BENCH_ROUNDS=%s, BENCH_LOADS=%s, runs %s, windows %s, %s cores, tree %s) ==\n' \
		"$(date -u +%FT%TZ)" "$ROUNDS" "$LOADS" "${BENCH_RUNS:-1000}" "${BENCH_WINDOWS:-200}" "$(nproc)" \
		"$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")"
	printf 'plugin binary: %s (mtime %s); browser: %s\n' "$PLUGIN_BIN" "$(date -u -r "$PLUGIN_BIN" +%FT%TZ)" \
		"$(chromium --version 2>/dev/null || echo "chromium (version unknown)")"
	printf 'machine load average (1/5/15 min): %s at start, %s at the end (a shared box: compare with care)\n' \
		"$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
	printf 'uptime: %s\n' "$(uptime)"
	cat "$OUT/bench.out"
} | tee "$OUT/summary.txt"
if ((rc != 0)); then
	die "the benchmark failed (exit $rc); see above and $OUT (dashboard-*.log, chromedriver.log)"
fi
progress "done in $(since "$T_BENCH")s"
