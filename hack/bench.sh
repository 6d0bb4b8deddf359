#!/usr/bin/env bash
# Benchmark of the local control plane and of runbook-operator at 1,000 Runbooks.
#
# usage: hack/bench.sh
#
# Prints figures, not verdicts: there are no pass/fail thresholds. It exits
# non-zero only when something broke (cluster did not start, operator died,
# a timeout passed). Progress goes to stderr (a line at least every ~15 s),
# the summary table to stdout (also saved as summary.txt in the output dir).
#
# What it measures (timings are median / min / max over BENCH_RUNS runs):
#   1. cold build time of the cached cluster binaries, as recorded by
#      hack/cluster.sh when it built them (never rebuilds them)
#   2. warm cluster start: `hack/cluster.sh down bench; time hack/cluster.sh up bench`
#   3. with BENCH_COUNT Runbooks in one namespace, operator spawn -> /readyz 200
#      and the operator's own "caches synced; ready elapsed_ms=N":
#      - restart: the Runbooks stay, already settled; also spawn -> all
#        reconciled, and the writes the restarted operator made (target 0)
#      - fresh: Runbooks without status (run 1 = first operator start after the
#        cluster came up; later runs delete and recreate the Runbooks first);
#        also spawn -> every Runbook has .status.observedGeneration
#   4. operator RSS (VmRSS) at idle, BENCH_SETTLE s after everything settled
#   5. API writes per minute with everything settled, over a BENCH_WINDOW s
#      window: from the operator's /metrics and from the API server's
#      apiserver_request_total (verbs PATCH/POST/PUT/DELETE/APPLY on
#      ops.runbook.dev and on events), plus reconciles in the window
#
# Environment (defaults after the =):
#   BENCH_RUNS=3          repetitions of the cheap measurements (2, 3 fresh, 3 restart)
#   BENCH_WINDOW=60       seconds of the settled API-write window (5)
#   BENCH_COUNT=1000      number of Runbooks
#   BENCH_SETTLE=20       seconds to wait after settling before RSS / window
#   BENCH_TIMEOUT=300     seconds to wait for any single step
#   BENCH_CLUSTER=bench   cluster name for hack/cluster.sh
#   BENCH_NAMESPACE=bench-runbooks   namespace of the Runbooks
#   BENCH_PROBE_PORT=18089           operator probe/metrics port
#   BENCH_OPERATOR=path   use this operator binary instead of building
#                         target/release/runbook-operator with cargo
#   BENCH_OUT=dir         where logs and raw data go (default: a new /tmp dir)
#   BENCH_KEEP_CLUSTER=1  leave the bench cluster (and namespace) up at the end
#
# Uses the cluster named "bench" (API port 27443) unless BENCH_CLUSTER names another;
# it is stopped at exit.
# Takes about 3 minutes with the defaults on a 2-core machine (of which
# BENCH_SETTLE + BENCH_WINDOW are waiting).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_SH=$SCRIPT_DIR/cluster.sh
CLUSTER=${BENCH_CLUSTER:-bench}
BENCH_TAG=bench
# shellcheck source=SCRIPTDIR/bench-lib.sh
. "$SCRIPT_DIR/bench-lib.sh"

RUNS=${BENCH_RUNS:-3}
WINDOW=${BENCH_WINDOW:-60}
COUNT=${BENCH_COUNT:-1000}
SETTLE=${BENCH_SETTLE:-20}
TIMEOUT=${BENCH_TIMEOUT:-300}
NS=${BENCH_NAMESPACE:-bench-runbooks}
PROBE_PORT=${BENCH_PROBE_PORT:-18089}
KEEP_CLUSTER=${BENCH_KEEP_CLUSTER:-0}
OUT=${BENCH_OUT:-$(mktemp -d /tmp/runbook-bench.XXXXXX)}
mkdir -p "$OUT"

KEEP_NOTE="namespace $NS"
check_positive RUNS WINDOW COUNT SETTLE TIMEOUT PROBE_PORT

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
# "median min max n" of the numbers given as arguments ("- - - 0" for none).
stats() {
	(($# > 0)) || { echo "- - - 0"; return; }
	printf '%s\n' "$@" | sort -g | awk '
		{ v[NR] = $1 }
		END {
			m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf "%.2f %.2f %.2f %d\n", m, v[1], v[NR], NR
		}'
}

# Summary rows: label, "median min max n" (or free text), unit, note;
# fields separated by \x1f (not a tab: read would merge empty fields).
ROWS=()
US=$'\x1f'
row() { ROWS+=("$1$US$2$US${3:-}$US${4:-}"); }

# ---------------------------------------------------------------------------
# cleanup
# ---------------------------------------------------------------------------
delete_namespaces() {
	progress "deleting namespace $NS"
	kubectl delete namespace "$NS" --timeout=90s >/dev/null 2>&1 ||
		progress "  (namespace deletion did not finish; the cluster goes down anyway)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# operator helpers
# ---------------------------------------------------------------------------
OP_URL=http://127.0.0.1:$PROBE_PORT
# Alive unless gone or a zombie (an exited child stays a zombie until we wait for it).
op_alive() {
	local state
	[[ -n $OP_PID ]] || return 1
	state=$(awk '/^State:/ { print $2 }' "/proc/$OP_PID/status" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}
op_died() { # what we were waiting for
	progress "---- last lines of $OP_LOG ----"
	tail -n 30 "$OP_LOG" >&2 || true
	die "the operator exited while waiting for $1"
}
op_metrics() {
	curl -sf --max-time 5 "$OP_URL/metrics" || { progress "cannot scrape $OP_URL/metrics"; return 1; }
}
# Sum of a metric family (all label sets) in a /metrics text on stdin.
metric_sum() { # name [label-filter-regex]
	awk -v n="$1" -v f="${2:-}" '
		index($0, n "{") == 1 || index($0, n " ") == 1 { if (f == "" || $0 ~ f) s += $NF }
		END { printf "%d\n", s }'
}
op_writes() { op_metrics | metric_sum runbook_operator_api_writes_total "${1:-}"; }
op_reconciles() { op_metrics | metric_sum runbook_operator_reconciles_total "${1:-}"; }

# Runbooks in $NS whose status has an observedGeneration.
status_count() {
	kubectl get runbooks.ops.runbook.dev -n "$NS" \
		-o jsonpath='{range .items[*]}{.status.observedGeneration}{"\n"}{end}' 2>>"$OUT/kubectl-poll.err" |
		grep -c . || true
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$OP_PID/status"; }

OP_LOG=
start_operator() { # run-number; sets OP_PID, OP_LOG, T_SPAWN
	OP_LOG=$OUT/operator-$1.log
	T_SPAWN=$EPOCHREALTIME
	NO_COLOR=1 RUST_LOG=${RUST_LOG:-info,kube=warn} \
		"$OP_BIN" run --namespace "$NS" --probe-addr "127.0.0.1:$PROBE_PORT" >"$OP_LOG" 2>&1 &
	OP_PID=$!
}

wait_ready() { # prints seconds from spawn to /readyz 200
	local deadline=$((SECONDS + TIMEOUT)) next=$((SECONDS + 15)) code
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$OP_URL/readyz" 2>/dev/null || true)
		if [[ $code == 200 ]]; then
			since "$T_SPAWN"
			return 0
		fi
		op_alive || op_died "/readyz"
		((SECONDS < deadline)) || die "operator not ready after ${TIMEOUT}s (log: $OP_LOG)"
		if ((SECONDS >= next)); then
			progress "  ... waiting for /readyz (last HTTP code: ${code:-none})"
			next=$((SECONDS + 15))
		fi
		sleep 0.05
	done
}

# elapsed_ms from the operator's "caches synced; ready" line (waits up to 5 s for it).
synced_ms() {
	local i ms
	for ((i = 0; i < 50; i++)); do
		ms=$(sed 's/\x1b\[[0-9;]*m//g' "$OP_LOG" | grep 'caches synced; ready' |
			grep -o 'elapsed_ms=[0-9]*' | head -n1 | cut -d= -f2 || true)
		if [[ -n $ms ]]; then
			echo "$ms"
			return 0
		fi
		sleep 0.1
	done
	echo ""
}

# Waits until the runbook controller has reconciled at least COUNT times
# (its initial pass over every object); prints seconds since spawn.
wait_reconciled() {
	local deadline=$((SECONDS + TIMEOUT)) next=$((SECONDS + 15)) n
	while :; do
		n=$(op_reconciles 'controller="runbook"' 2>/dev/null) || n=0
		if ((n >= COUNT)); then
			since "$T_SPAWN"
			return 0
		fi
		op_alive || op_died "the initial reconcile pass"
		((SECONDS < deadline)) || die "only $n/$COUNT Runbooks reconciled after ${TIMEOUT}s (log: $OP_LOG)"
		if ((SECONDS >= next)); then
			progress "  ... $n/$COUNT Runbooks reconciled"
			next=$((SECONDS + 15))
		fi
		sleep 0.1
	done
}

# Waits until every Runbook has .status.observedGeneration; prints seconds since spawn.
# Resolution: the duration of one `kubectl get` of all Runbooks (time is taken when
# the list that first sees all of them returns).
wait_statuses() {
	local deadline=$((SECONDS + TIMEOUT)) next=$((SECONDS + 15)) n
	while :; do
		n=$(status_count)
		if ((n >= COUNT)); then
			since "$T_SPAWN"
			return 0
		fi
		op_alive || op_died "statuses"
		((SECONDS < deadline)) || die "only $n/$COUNT Runbooks have a status after ${TIMEOUT}s (log: $OP_LOG)"
		if ((SECONDS >= next)); then
			progress "  ... $n/$COUNT Runbooks have .status.observedGeneration"
			next=$((SECONDS + 15))
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------------------
# API server metrics: write requests to ops.runbook.dev and to events
# ---------------------------------------------------------------------------
# One "key<TAB>count" line per group/resource/subresource + verb.
apiserver_writes() {
	kubectl get --raw /metrics | awk '
		function lbl(s, name,   r) {
			if (match(s, "(^|,)" name "=\"[^\"]*\"")) {
				r = substr(s, RSTART, RLENGTH); sub(/^,/, "", r)
				sub("^" name "=\"", "", r); sub(/"$/, "", r); return r
			}
			return ""
		}
		/^apiserver_request_total\{/ {
			l = $0; sub(/^[^{]*\{/, "", l); sub(/\}[^}]*$/, "", l)
			verb = lbl(l, "verb"); group = lbl(l, "group")
			res = lbl(l, "resource"); subr = lbl(l, "subresource")
			if (verb !~ /^(PATCH|POST|PUT|DELETE|APPLY)$/) next
			if (group == "ops.runbook.dev") key = group "/" res (subr != "" ? "/" subr : "")
			else if (res == "events") key = (group == "" ? "core" : group) "/events"
			else next
			n[key " " verb] += $NF
		}
		END { for (k in n) printf "%s\t%d\n", k, n[k] }' | sort
}
# Per-key deltas (after - before), only the non-zero ones.
delta_lines() { # before-file after-file
	awk -F'\t' 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d != 0) printf "%s\t%d\n", $1, d }' "$1" "$2"
}
delta_sum() { # before after [key-regex]
	delta_lines "$1" "$2" | awk -F'\t' -v f="${3:-}" 'f == "" || $1 ~ f { s += $2 } END { printf "%d\n", s }'
}

per_min() { awk -v n="$1" -v w="$2" 'BEGIN { printf "%.1f", n * 60 / w }'; }

# ===========================================================================
progress "runbook-operator benchmark: runs=$RUNS window=${WINDOW}s runbooks=$COUNT settle=${SETTLE}s (output: $OUT)"

# ---------------------------------------------------------------------------
# operator binary (release)
# ---------------------------------------------------------------------------
if [[ -n ${BENCH_OPERATOR:-} ]]; then
	OP_BIN=$BENCH_OPERATOR
	progress "using operator binary $OP_BIN (BENCH_OPERATOR)"
else
	OP_BIN=$REPO_ROOT/target/release/runbook-operator
	progress "cargo build --release --locked (log: $OUT/cargo-build.log)"
	hb_start "building the operator"
	rc=0
	(cd "$REPO_ROOT" && cargo build --release --locked) >"$OUT/cargo-build.log" 2>&1 || rc=$?
	hb_stop
	if ((rc != 0)); then
		tail -n 30 "$OUT/cargo-build.log" >&2
		die "cargo build --release --locked failed (exit $rc)"
	fi
fi
[[ -x $OP_BIN ]] || die "operator binary $OP_BIN is missing"

# ---------------------------------------------------------------------------
# 1. cold build time of the cluster binaries (as recorded, never rebuilt)
# ---------------------------------------------------------------------------
progress "1. cold build time of the cluster binaries (recorded values only)"
"$CLUSTER_SH" build >"$OUT/cluster-build.log" 2>&1 || {
	tail -n 30 "$OUT/cluster-build.log" >&2
	die "hack/cluster.sh build failed"
}
CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}
# A recorded duration: "build_seconds=N" (or "seconds=N") in the .stamp or build.log,
# or the "built <what> in Ns" line of cluster.sh's run_logged if it lands in build.log.
recorded_build_seconds() { # cache-dir
	local d=$1 s
	s=$(grep -ohE '(build_)?seconds=[0-9.]+' "$d/.stamp" "$d/build.log" 2>/dev/null | tail -n1 | cut -d= -f2 || true)
	[[ -n $s ]] || s=$(grep -ohE 'built .* in [0-9.]+s' "$d/build.log" 2>/dev/null | tail -n1 |
		grep -oE '[0-9.]+s$' | tr -d s || true)
	echo "$s"
}
build_total=0 build_all_recorded=1
# the versions cluster.sh uses (same sources as cluster.sh)
gomod_version() { awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m) { print $(i + 1); exit } }' "$1"; }
build_dirs=(
	"$CACHE_ROOT/kube-$(gomod_version "$REPO_ROOT/tools/k8s/go.mod" k8s.io/kubernetes)"
	"$CACHE_ROOT/etcd-$(gomod_version "$REPO_ROOT/tools/etcd/go.mod" go.etcd.io/etcd/server/v3)"
	"$CACHE_ROOT/kwok-$(sed -n 's/^KWOK_VERSION=//p' "$CLUSTER_SH" | head -n1)"
)
for dir in "${build_dirs[@]}"; do
	[[ -d $dir ]] || die "binary cache $dir is missing after cluster.sh build"
	name=$(basename "$dir")
	stamp=$(head -n1 "$dir/.stamp" 2>/dev/null | awk '{print $1}' || true)
	secs=$(recorded_build_seconds "$dir")
	if [[ -n $secs ]]; then
		row "1  cold build: $name" "$secs $secs $secs 1" s "built ${stamp:-?}"
		build_total=$(awk -v a="$build_total" -v b="$secs" 'BEGIN { print a + b }')
	else
		row "1  cold build: $name" "not recorded" "" "stamp only has the build date ${stamp:-?}"
		build_all_recorded=0
	fi
	progress "  $name: ${secs:+${secs}s}${secs:-not recorded} (stamp: ${stamp:-none})"
done
if ((build_all_recorded)); then
	row "1  cold build: all cluster binaries" "$build_total $build_total $build_total 1" s "sum"
fi

# ---------------------------------------------------------------------------
# 2. warm cluster start
# ---------------------------------------------------------------------------
progress "2. warm cluster start: cluster.sh down $CLUSTER; time cluster.sh up $CLUSTER  (x$RUNS)"
up_times=()
for ((i = 1; i <= RUNS; i++)); do
	"$CLUSTER_SH" down "$CLUSTER" >>"$OUT/cluster-down.log" 2>&1 || die "hack/cluster.sh down $CLUSTER failed (log: $OUT/cluster-down.log)"
	progress "  run $i/$RUNS: hack/cluster.sh up $CLUSTER"
	cluster_up "$OUT/cluster-up-$i.log"
	t=$CLUSTER_UP_SECONDS
	up_times+=("$t")
	progress "  run $i/$RUNS: cluster up in ${t}s"
done
row "2  warm cluster start (cluster.sh up)" "$(stats "${up_times[@]}")" s "target < 30 s"
use_cluster

# ---------------------------------------------------------------------------
# CRDs and Runbooks
# ---------------------------------------------------------------------------
progress "installing CRDs"
install_crds

kubectl create namespace "$NS" >/dev/null
NS_CREATED=1

PARALLEL=4
progress "creating $COUNT Runbooks in $NS ($PARALLEL parallel server-side applies)"
for ((p = 0; p < PARALLEL; p++)); do : >"$OUT/runbooks-$p.yaml"; done
for ((n = 1; n <= COUNT; n++)); do
	printf -- '---\napiVersion: ops.runbook.dev/v1alpha1\nkind: Runbook\nmetadata:\n  name: rb-%d\n  namespace: %s\nspec:\n  steps:\n  - name: check\n    http:\n      url: "http://app:8080/health"\n' \
		"$n" "$NS" >>"$OUT/runbooks-$((n % PARALLEL)).yaml"
done
create_times=()
create_runbooks() {
	local t0 t p pid rc=0 have pids=()
	hb_start "creating Runbooks"
	t0=$EPOCHREALTIME
	for ((p = 0; p < PARALLEL; p++)); do
		kubectl apply --server-side --field-manager=bench -f "$OUT/runbooks-$p.yaml" >"$OUT/create-$p.log" 2>&1 &
		pids+=($!)
	done
	for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
	t=$(since "$t0")
	hb_stop
	((rc == 0)) || { tail -n 20 "$OUT"/create-*.log >&2; die "creating the Runbooks failed"; }
	have=$(kubectl get runbooks.ops.runbook.dev -n "$NS" -o name | wc -l)
	((have == COUNT)) || die "expected $COUNT Runbooks in $NS, found $have"
	create_times+=("$t")
	progress "  $COUNT Runbooks created in ${t}s"
}
create_runbooks

# ---------------------------------------------------------------------------
# 3. operator start with COUNT Runbooks
#    "fresh": the Runbooks have no status yet, the operator writes all of them;
#             run 1 is the first operator start after the cluster came up, later
#             fresh runs delete and recreate the Runbooks first.
#    "restart": the Runbooks stay, already settled (the brief's sync figure).
#    Order: fresh 1, restart 1..N, fresh 2..N; the last operator keeps running
#    for 4 and 5.
# ---------------------------------------------------------------------------
check_port_free
fresh_ready=() fresh_synced=() fresh_status=() fresh_notes=() fresh_rss=()
restart_ready=() restart_synced=() restart_reconciled=() restart_writes=() restart_status_writes=() restart_rss=()
OP_RUN=0

# Starts the operator; sets T_READY and MS (elapsed_ms from its log, in s).
start_and_wait_ready() { # label
	OP_RUN=$((OP_RUN + 1))
	start_operator "$OP_RUN-$1"
	T_READY=$(wait_ready)
	MS=$(synced_ms)
	if [[ -n $MS ]]; then
		MS=$(awk -v m="$MS" 'BEGIN { printf "%.3f", m / 1000 }')
	else
		progress "  warning: no 'caches synced; ready elapsed_ms=' line in $OP_LOG"
	fi
}

run_fresh() { # n
	stop_operator
	start_and_wait_ready fresh
	LAST_KIND="fresh run $1"
	local t_rec t_st sw ev
	t_rec=$(wait_reconciled)
	t_st=$(wait_statuses)
	sw=$(op_writes 'write="status"')
	ev=$(op_writes 'write="event"')
	fresh_ready+=("$T_READY")
	[[ -z $MS ]] || fresh_synced+=("$MS")
	fresh_status+=("$t_st")
	fresh_notes+=("$sw/$ev")
	fresh_rss+=("$(rss_mib)")
	progress "  fresh $1/$RUNS: /readyz ${T_READY}s (log: ${MS:-?}s), all reconciled ${t_rec}s, all statuses ${t_st}s after spawn; $sw status writes, $ev events"
}

run_restart() { # n
	stop_operator
	start_and_wait_ready restart
	LAST_KIND="restart $1"
	local t_rec w
	t_rec=$(wait_reconciled)
	sleep 2 # let any write triggered by the initial pass land
	w=$(op_writes)
	restart_ready+=("$T_READY")
	[[ -z $MS ]] || restart_synced+=("$MS")
	restart_reconciled+=("$t_rec")
	restart_writes+=("$w")
	restart_status_writes+=("$(op_writes 'write="status"')")
	restart_rss+=("$(rss_mib)")
	progress "  restart $1/$RUNS: /readyz ${T_READY}s (log: ${MS:-?}s), all $COUNT settled Runbooks reconciled ${t_rec}s after spawn; writes: $w"
}

# Deletes every Runbook of $NS (one deletecollection request) and creates them again.
recreate_runbooks() {
	stop_operator
	kubectl delete --raw "/apis/ops.runbook.dev/v1alpha1/namespaces/$NS/runbooks" >/dev/null ||
		die "deleting the Runbooks of $NS failed"
	local deadline=$((SECONDS + TIMEOUT))
	until (($(kubectl get runbooks.ops.runbook.dev -n "$NS" -o name | wc -l) == 0)); do
		((SECONDS < deadline)) || die "Runbooks of $NS not gone after ${TIMEOUT}s"
		sleep 0.5
	done
	create_runbooks
}

progress "3. operator start with $COUNT Runbooks ($OP_BIN): $RUNS fresh runs (statuses written), $RUNS restarts on settled objects"
run_fresh 1
for ((i = 1; i <= RUNS; i++)); do run_restart "$i"; done
for ((i = 2; i <= RUNS; i++)); do
	progress "  recreating the $COUNT Runbooks for fresh run $i"
	recreate_runbooks
	run_fresh "$i"
done
ready_count=$(kubectl get runbooks.ops.runbook.dev -n "$NS" \
	-o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Ready$' || true)

row "   (setup) create $COUNT Runbooks, $PARALLEL x kubectl apply" "$(stats "${create_times[@]}")" s "not a target figure"
row "3a restart, settled: spawn -> /readyz 200" "$(stats "${restart_ready[@]}")" s "Runbooks stay, statuses set"
row "3b restart, settled: log 'caches synced'" "$(stats "${restart_synced[@]}")" s "operator's elapsed_ms, in s"
row "3c restart, settled: spawn -> all reconciled" "$(stats "${restart_reconciled[@]}")" s "reconciles_total >= $COUNT"
row "3d restart, settled: writes by the operator" "$(stats "${restart_writes[@]}")" writes "status writes: ${restart_status_writes[*]}; target 0"
row "3e restart, settled: VmRSS after initial pass" "$(stats "${restart_rss[@]}")" MiB "2 s after all reconciled"
row "3f fresh: spawn -> /readyz 200" "$(stats "${fresh_ready[@]}")" s "run 1 (first start after cluster up): ${fresh_ready[0]} s"
row "3g fresh: log 'caches synced'" "$(stats "${fresh_synced[@]}")" s "run 1: ${fresh_synced[0]:-?} s"
row "3h fresh: spawn -> all have status" "$(stats "${fresh_status[@]}")" s "run 1: ${fresh_status[0]} s; .status.observedGeneration set"
row "     (status writes/events per fresh run)" "" "" "${fresh_notes[*]}; phase Ready now: $ready_count/$COUNT"
row "3i fresh: VmRSS right after all statuses" "$(stats "${fresh_rss[@]}")" MiB "after writing $COUNT statuses and events"

# ---------------------------------------------------------------------------
# 4. RSS at idle  and  5. API writes over a settled window
# ---------------------------------------------------------------------------
progress "4. settling for ${SETTLE}s before reading the operator's RSS"
sleep "$SETTLE"
op_alive || op_died "settling"
rss1_mib=$(rss_mib)
progress "  VmRSS ${rss1_mib} MiB"

progress "5. API writes over a ${WINDOW}s window with $COUNT settled Runbooks"
apiserver_writes >"$OUT/apiserver-writes-before.tsv"
w0=$(op_writes) r0=$(op_reconciles) rr0=$(op_reconciles 'controller="runbook"')
t0=$EPOCHREALTIME
end=$((SECONDS + WINDOW))
while ((SECONDS < end)); do
	left=$((end - SECONDS))
	sleep $((left < 15 ? left : 15))
	op_alive || op_died "the write window"
	progress "  ... window: $((WINDOW - (end - SECONDS)))/${WINDOW}s; operator writes so far: $(($(op_writes) - w0))"
done
w1=$(op_writes) r1=$(op_reconciles) rr1=$(op_reconciles 'controller="runbook"')
apiserver_writes >"$OUT/apiserver-writes-after.tsv"
window=$(since "$t0")
rss2_mib=$(rss_mib)
op_w=$((w1 - w0))
api_crd=$(delta_sum "$OUT/apiserver-writes-before.tsv" "$OUT/apiserver-writes-after.tsv" '^ops\.runbook\.dev/')
api_ev=$(delta_sum "$OUT/apiserver-writes-before.tsv" "$OUT/apiserver-writes-after.tsv" '/events ')
delta_lines "$OUT/apiserver-writes-before.tsv" "$OUT/apiserver-writes-after.tsv" >"$OUT/apiserver-writes-delta.tsv"
if [[ -s $OUT/apiserver-writes-delta.tsv ]]; then
	progress "  API server write deltas in the window:"
	sed 's/^/      /' "$OUT/apiserver-writes-delta.tsv" >&2
fi

row "4  operator VmRSS, idle ${SETTLE}s after settling" "$rss1_mib $rss1_mib $rss1_mib 1" MiB "operator of $LAST_KIND; after the window: $rss2_mib MiB"
row "5a API writes/min, operator /metrics" "$(per_min "$op_w" "$window") - - 1" /min "$op_w in ${window}s; target 0"
row "5b API writes/min, apiserver ops.runbook.dev" "$(per_min "$api_crd" "$window") - - 1" /min "$api_crd in ${window}s; target 0"
row "5c API writes/min, apiserver events" "$(per_min "$api_ev" "$window") - - 1" /min "$api_ev in ${window}s; all clients, not only the operator"
row "5d reconciles in the window" "$((r1 - r0)) - - 1" count "runbook controller: $((rr1 - rr0))"

# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------
stop_operator
{
	summary_head "runbook-operator benchmark" "BENCH_RUNS=$RUNS, BENCH_WINDOW=${WINDOW}s, $COUNT Runbooks"
	printf '%-46s %9s %9s %9s %-6s %2s  %s\n' figure median min max unit n note
	printf '%s\n' "-------------------------------------------------------------------------------------------------------------"
	for r in "${ROWS[@]}"; do
		IFS=$US read -r label vals unit note <<<"$r"
		if [[ $vals =~ ^[-0-9.]+\ [-0-9.]+\ [-0-9.]+\ [0-9]+$ ]]; then
			read -r med mn mx n <<<"$vals"
			printf '%-46s %9s %9s %9s %-6s %2s  %s\n' "$label" "$med" "$mn" "$mx" "$unit" "$n" "$note"
		else
			printf '%-46s %29s %-6s %2s  %s\n' "$label" "$vals" "$unit" "" "$note"
		fi
	done
} | tee "$OUT/summary.txt"
progress "done in $(since "$T_BENCH")s"
