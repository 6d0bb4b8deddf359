# shellcheck shell=bash
# What hack/bench.sh, hack/bench-runs.sh, hack/bench-windows.sh, hack/bench-releases.sh,
# hack/bench-backups.sh, hack/bench-failover.sh and hack/bench-scale.sh share; sourced, not run.
# Progress lines and a heartbeat, the EXIT trap's cleanup, the cluster (hack/cluster.sh),
# CRDs, building and starting the operator, the operator's identity and FlowSchemas, running
# the bench binary, and the summary's first lines.
#
# The sourcing script sets, before it calls anything here:
#   BENCH_TAG     the tag of its progress lines and errors (bench, bench-runs, bench-windows,
#                 bench-releases, bench-backups)
#   REPO_ROOT CLUSTER_SH CLUSTER OUT KEEP_CLUSTER PROBE_PORT TIMEOUT   its settings
#   KEEP_NOTE     what BENCH_KEEP_CLUSTER=1 leaves up besides the cluster ("namespace $NS")
# and defines delete_namespaces, which cleanup calls once NS_CREATED=1. The scripts that
# start the operator as a user of its own (bench-runs, bench-windows, bench-releases,
# bench-backups, bench-scale) also set OP_USER and FLOW_PREFIX.
#
# Variables assigned here are read by the sourcing scripts, and the other way round:
# shellcheck disable=SC2034,SC2154

T_BENCH=$EPOCHREALTIME
# Every operator a benchmark starts (here or from a bench binary) runs on this machine and
# its http steps call servers on 127.0.0.1, which the outbound fence refuses unless allowed.
export ALLOW_LOOPBACK_EGRESS=true
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Seconds (2 decimals) since an $EPOCHREALTIME value, or between two of them.
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f", b - a }'; }
progress() { printf '[%s %s +%3.0fs] %s\n' "$BENCH_TAG" "$(date +%H:%M:%S)" "$(since "$T_BENCH")" "$*" >&2; }
die() { progress "ERROR: $*"; exit 1; }

# Exits 2 unless each variable named is a positive integer.
check_positive() { # variable-name...
	local v
	for v in "$@"; do
		[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "$BENCH_TAG: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
	done
}

# A background heartbeat while a long command runs in the foreground
# (so the command itself is timed exactly).
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
# cleanup (the scripts install it: trap cleanup EXIT)
# ---------------------------------------------------------------------------
OP_PID=
BENCH_PID=
CLUSTER_STARTED=0
NS_CREATED=0
# SIGTERM, then SIGKILL after 10 s; reaps the process.
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
		progress "BENCH_KEEP_CLUSTER=1: leaving cluster '$CLUSTER' and $KEEP_NOTE up"
	else
		if ((NS_CREATED)); then
			delete_namespaces
		fi
		if ((CLUSTER_STARTED)); then
			progress "stopping cluster '$CLUSTER'"
			"$CLUSTER_SH" down "$CLUSTER" >>"$OUT/cluster-down.log" 2>&1
		fi
	fi
	progress "logs and raw data: $OUT"
	exit "$rc"
}

# ---------------------------------------------------------------------------
# cluster and CRDs
# ---------------------------------------------------------------------------
# `hack/cluster.sh up $CLUSTER`, its export lines into $OUT/cluster-env.sh and its log into
# LOG; dies (showing the log's tail) when it fails. Sets CLUSTER_UP_SECONDS to how long the
# command took.
cluster_up() { # log
	local t0 rc=0
	CLUSTER_STARTED=1
	hb_start "starting the cluster"
	t0=$EPOCHREALTIME
	"$CLUSTER_SH" up "$CLUSTER" >"$OUT/cluster-env.sh" 2>"$1" || rc=$?
	CLUSTER_UP_SECONDS=$(since "$t0")
	hb_stop
	if ((rc != 0)); then
		tail -n 30 "$1" >&2
		die "hack/cluster.sh up $CLUSTER failed (exit $rc)"
	fi
}

# Takes the cluster's KUBECONFIG and kubectl (PATH) into this shell.
use_cluster() {
	# shellcheck disable=SC1091
	. "$OUT/cluster-env.sh"
	command -v kubectl >/dev/null || die "kubectl not on PATH after cluster.sh up"
}

# Applies crds/ and waits until they are Established (log: $OUT/crds.log).
install_crds() {
	kubectl apply --server-side -f "$REPO_ROOT/crds/" >"$OUT/crds.log" 2>&1 || { cat "$OUT/crds.log" >&2; die "applying crds/ failed"; }
	kubectl wait --for=condition=Established crd --all --timeout=60s >>"$OUT/crds.log" 2>&1 || die "CRDs not Established (log: $OUT/crds.log)"
}

# ---------------------------------------------------------------------------
# the operator, running as the user $OP_USER whose requests FlowSchemas $FLOW_PREFIX* count
# ---------------------------------------------------------------------------
# Builds the operator (unless BENCH_OPERATOR names a binary) and the bench target TARGET;
# sets OP_BIN (BENCH_OPERATOR, or RELEASE-BIN: what `cargo build --release` makes) and
# BENCH_BIN. Logs: $OUT/cargo-build.log, $OUT/cargo-bench.json. BENCH_CARGO_PROFILE=dev builds
# the bench binary without optimisation (quicker to build; it only waits on the cluster).
build_binaries() { # target release-bin
	local target=$1 rc=0
	if [[ -n ${BENCH_OPERATOR:-} ]]; then
		OP_BIN=$BENCH_OPERATOR
		progress "using operator binary $OP_BIN (BENCH_OPERATOR)"
		progress "building the bench: cargo bench --locked --bench $target --no-run (log: $OUT/cargo-build.log)"
	else
		OP_BIN=$2
		progress "building: cargo build --release --locked; cargo bench --locked --bench $target --no-run (log: $OUT/cargo-build.log)"
	fi
	hb_start "building"
	(
		cd "$REPO_ROOT"
		if [[ -z ${BENCH_OPERATOR:-} ]]; then cargo build --release --locked; fi
		cargo bench --locked --profile "${BENCH_CARGO_PROFILE:-bench}" --bench "$target" --no-run --message-format=json >"$OUT/cargo-bench.json"
	) >"$OUT/cargo-build.log" 2>&1 || rc=$?
	hb_stop
	if ((rc != 0)); then
		tail -n 30 "$OUT/cargo-build.log" >&2
		die "building failed (exit $rc)"
	fi
	[[ -x $OP_BIN ]] || die "operator binary $OP_BIN is missing"
	BENCH_BIN=$(grep '"reason":"compiler-artifact"' "$OUT/cargo-bench.json" | grep '"kind":\["bench"\]' |
		grep "\"name\":\"$target\"" | grep -o '"executable":"[^"]*"' | tail -n1 | cut -d'"' -f4 || true)
	[[ -n $BENCH_BIN && -x $BENCH_BIN ]] || die "cannot find the bench executable in $OUT/cargo-bench.json"
	progress "operator: $OP_BIN; bench: $BENCH_BIN"
}

# The operator runs as the user $OP_USER (impersonated by the admin credentials):
# cluster-admin through RBAC, and its own FlowSchemas, on the exempt priority level
# (never throttled, like the admin identity it would otherwise use). Each FlowSchema
# takes one kind of request; the lowest matchingPrecedence wins.
# Requests the operator sends impersonating the ServiceAccounts of the objects it acts for
# (every step's reads and writes of its targets) count as the operator's too: each FlowSchema
# also takes the ServiceAccounts of the namespaces in RUNNER_NAMESPACES (space-separated).
flow_schema() { # suffix precedence verbs-json groups-json resources-json [non-resource]
	local subjects="{kind: User, user: {name: $OP_USER}}" ns
	for ns in ${RUNNER_NAMESPACES:-}; do
		subjects+=", {kind: ServiceAccount, serviceAccount: {namespace: $ns, name: \"*\"}}"
	done
	printf -- '---\napiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata:\n  name: %s%s\nspec:\n  matchingPrecedence: %s\n  priorityLevelConfiguration: {name: exempt}\n  rules:\n  - subjects: [%s]\n    resourceRules: [{verbs: %s, apiGroups: %s, resources: %s, namespaces: ["*"], clusterScope: true}]\n' \
		"$FLOW_PREFIX" "$1" "$2" "$subjects" "$3" "$4" "$5"
	if [[ -n ${6:-} ]]; then printf '    nonResourceRules: [{verbs: ["*"], nonResourceURLs: ["*"]}]\n'; fi
}

# Applies the ClusterRoleBinding and FlowSchemas of $OP_USER, then impersonates it (see
# impersonate_operator_user).
install_operator_identity() {
	printf -- '---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: %s\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: %s}\n' "$OP_USER" "$OP_USER" >"$OUT/operator-identity.yaml"
	kubectl apply -f "$OUT/operator-identity.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying $OUT/operator-identity.yaml failed"; }
	impersonate_operator_user
}

# Applies the FlowSchemas that count $OP_USER's requests by kind ($OUT/flowschemas.yaml),
# writes OP_KUBECONFIG (the admin kubeconfig, impersonating $OP_USER) and checks that it
# authenticates as $OP_USER. What $OP_USER may do is the caller's to grant.
impersonate_operator_user() {
	local who
	install_flow_schemas
	OP_KUBECONFIG=$OUT/operator.kubeconfig
	sed "/^  user:\$/a\\    as: $OP_USER" "$KUBECONFIG" >"$OP_KUBECONFIG"
	chmod 600 "$OP_KUBECONFIG"
	who=$(kubectl --kubeconfig "$OP_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}' 2>>"$OUT/crds.log" || true)
	[[ $who == "$OP_USER" ]] || die "the operator's kubeconfig authenticates as '$who', not $OP_USER"
}

# Like impersonate_operator_user for a ServiceAccount $OP_USER, but OP_KUBECONFIG holds a token
# of that account (hack/operator-kubeconfig.sh) instead of admin credentials that impersonate
# it: the operator then really is the account, and its own impersonation of the objects'
# ServiceAccounts is checked against the account's RBAC.
token_operator_user() { # namespace serviceaccount
	local who
	install_flow_schemas
	OP_KUBECONFIG=$OUT/operator.kubeconfig
	"$REPO_ROOT/hack/operator-kubeconfig.sh" "$1" "$2" "$OP_KUBECONFIG" 4h 2>>"$OUT/crds.log" || die "minting a token for $1/$2 failed (see $OUT/crds.log)"
	who=$(kubectl --kubeconfig "$OP_KUBECONFIG" auth whoami -o jsonpath='{.status.userInfo.username}' 2>>"$OUT/crds.log" || true)
	[[ $who == "$OP_USER" ]] || die "the operator's kubeconfig authenticates as '$who', not $OP_USER"
}

# The FlowSchemas that count $OP_USER's requests by kind ($OUT/flowschemas.yaml).
install_flow_schemas() {
	local writes='[create, update, patch, delete, deletecollection]'
	{
		flow_schema events 300 '["*"]' '["", "events.k8s.io"]' '[events]'
		flow_schema crd-write 301 "$writes" '[ops.runbook.dev]' '["*"]'
		flow_schema write 302 "$writes" '["*"]' '["*"]'
		flow_schema get 303 '[get]' '["*"]' '["*"]'
		flow_schema list 304 '[list]' '["*"]' '["*"]'
		flow_schema watch 305 '[watch]' '["*"]' '["*"]'
		flow_schema other 309 '["*"]' '["*"]' '["*"]' non-resource
	} >"$OUT/flowschemas.yaml"
	kubectl apply -f "$OUT/flowschemas.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying FlowSchemas failed"; }
}

# Starts the cluster, installs the CRDs and the operator's identity (bench-runs, bench-windows,
# bench-releases, bench-backups).
start_cluster_with_operator_identity() {
	progress "hack/cluster.sh up $CLUSTER"
	cluster_up "$OUT/cluster-up.log"
	use_cluster

	progress "installing CRDs, RBAC for $OP_USER and FlowSchemas $FLOW_PREFIX*"
	install_crds
	install_operator_identity
	grant_runner_rights
}

# Objects act as a ServiceAccount of their namespace (`default` unless they name one), never
# as the operator. A bench cluster has no tenants: one ClusterRoleBinding grants the built-in
# `edit` role to every ServiceAccount, so runs, windows, releases and policies act as they
# would for a team that granted its runner those rights; and `update` on the finalizers of the
# kinds that own what the runners create (step and backup Jobs, slot Deployments carry owner
# references that block owner deletion, which OwnerReferencesPermissionEnforcement checks).
grant_runner_rights() {
	printf -- '---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: runbook-bench-runner\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts"}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: runbook-bench-runner-owners\nrules:\n- {apiGroups: [ops.runbook.dev], resources: [runbookruns/finalizers, backuppolicies/finalizers, bluegreenreleases/finalizers], verbs: [update]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: runbook-bench-runner-owners\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: runbook-bench-runner-owners}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts"}\n' >"$OUT/runner-rbac.yaml"
	kubectl apply -f "$OUT/runner-rbac.yaml" >>"$OUT/crds.log" 2>&1 || { tail -n 20 "$OUT/crds.log" >&2; die "applying $OUT/runner-rbac.yaml failed"; }
}

# Dies when something listens on PROBE_PORT already.
check_port_free() {
	if (exec 3<>"/dev/tcp/127.0.0.1/$PROBE_PORT") 2>/dev/null; then
		die "port $PROBE_PORT is in use; set BENCH_PROBE_PORT"
	fi
}

# Starts the operator as $OP_USER with `run ARGS... --probe-addr 127.0.0.1:$PROBE_PORT`
# (log: $OUT/operator.log) and waits up to TIMEOUT s for /readyz. Sets OP_URL, OP_LOG, OP_PID.
start_operator_as_user() { # what args...
	local what=$1 deadline next
	shift
	OP_URL=http://127.0.0.1:$PROBE_PORT
	OP_LOG=$OUT/operator.log
	progress "$what (log: $OP_LOG)"
	KUBECONFIG=$OP_KUBECONFIG NO_COLOR=1 RUST_LOG=${RUST_LOG:-info,kube=warn} \
		"$OP_BIN" run "$@" --probe-addr "127.0.0.1:$PROBE_PORT" >"$OP_LOG" 2>&1 &
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
}

# ---------------------------------------------------------------------------
# the bench binary and the summary
# ---------------------------------------------------------------------------
# Runs BENCH_BIN with the environment assignments given, its stdout into $OUT/bench.out;
# returns its exit code.
run_bench() { # NAME=value...
	local rc=0
	env "$@" "$BENCH_BIN" --bench >"$OUT/bench.out" &
	BENCH_PID=$!
	wait "$BENCH_PID" || rc=$?
	BENCH_PID=
	return "$rc"
}

# Dies (showing the operator log's tail) unless the bench printed its figures before it
# failed with exit code RC.
figures_or_die() { # rc
	if ! grep -q '^figure' "$OUT/bench.out"; then
		progress "---- last lines of $OP_LOG ----"
		tail -n 20 "$OP_LOG" >&2 || true
		die "the benchmark failed (exit $1)"
	fi
}

# The summary's first lines: "== TITLE  date  (PARAMS, N cores, tree X) ==", the operator
# binary, the machine's load average at the start and now.
summary_head() { # title params
	echo
	printf '== %s  %s  (%s, %s cores, tree %s) ==\n' \
		"$1" "$(date -u +%FT%TZ)" "$2" "$(nproc)" "$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo "?")"
	printf 'operator binary: %s (mtime %s)\n' "$OP_BIN" "$(date -u -r "$OP_BIN" +%FT%TZ)"
	printf 'machine load average (1/5/15 min): %s at start, %s at the end (a shared box: compare with care)\n' \
		"$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
