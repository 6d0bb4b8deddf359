#!/usr/bin/env bash
# Local Kubernetes control plane for runbook-operator: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes, no kubelet),
# all as plain processes on 127.0.0.1. No Docker, no root needed.
#
# Binaries are built once per machine from pinned Go modules (tools/k8s,
# tools/etcd, kwok vX) into a version-keyed cache. Run `hack/cluster.sh help`.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: hack/cluster.sh COMMAND [NAME] [--purge]

  build           build missing binaries (kube-*, kubectl, etcd, kwok) into the cache
  up [NAME]       start cluster NAME (default: demo); reuses it when already healthy.
                  Prints `export KUBECONFIG=...` lines on stdout (eval-able).
  down [NAME]     stop the processes of cluster NAME; `down NAME --purge` also
                  deletes its state dir
  status [NAME]   show process / health state (exit 0 when up, 3 when not)
  env [NAME]      print export lines: KUBECONFIG and PATH with kubectl's dir
  smoke [NAME]    check the kwok simulation on a running cluster (Deployment,
                  Job success, Job failure, termination messages, run-for delay)
                  in a temp namespace
  kubectl-path    print the path of the kubectl built for this cluster version
  help            this text

Clusters and ports (API_PORT / ETCD_PORT / ETCD_PEER_PORT override):
  demo  16443 / 16379 / 16380      test  26443 / 26379 / 26380
  bench 27443 / 27379 / 27380
  (all below 32768, out of Linux's range for outgoing connections, so a
  client's ephemeral port never takes one)
  any other NAME: ports derived from a hash of NAME in 20000-29999
  (base+0 / base+1 / base+2), unless set in the environment.

Environment:
  RUNBOOK_OPERATOR_CACHE        binary cache (default ${XDG_CACHE_HOME:-~/.cache}/runbook-operator)
  RUNBOOK_OPERATOR_CLUSTER_DIR  state root (default <repo>/.cluster); state is <root>/NAME
  CLUSTER_TIMEOUT               seconds to wait for each component (default 120)
  KEEP_DATA=1                   `up` of a stopped cluster keeps its etcd data
                                (default: start from an empty etcd)
  KCM_API_QPS=N                 `up` starts kube-controller-manager with --kube-api-qps=N
                                and --kube-api-burst=2N (default: its own, 20 and 30;
                                its job controller then finishes about 4 Jobs a second)
EOF
}

# ---------------------------------------------------------------------------
# Paths and versions
# ---------------------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}
CLUSTER_ROOT=${RUNBOOK_OPERATOR_CLUSTER_DIR:-$REPO_ROOT/.cluster}
STAGES_FILE=$REPO_ROOT/hack/kwok/stages.yaml
TIMEOUT=${CLUSTER_TIMEOUT:-120}

# Version of a module as pinned in a tools go.mod ("<module> vX.Y.Z").
gomod_version() { # go.mod module
	sed -n "s|^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}$2[[:space:]]\{1,\}\(v[^[:space:]]*\).*|\2|p" "$1" | head -n1
}
KUBE_VERSION=$(gomod_version "$REPO_ROOT/tools/k8s/go.mod" k8s.io/kubernetes)
ETCD_VERSION=$(gomod_version "$REPO_ROOT/tools/etcd/go.mod" go.etcd.io/etcd/server/v3)
KWOK_VERSION=v0.8.0

KUBE_DIR=$CACHE_ROOT/kube-$KUBE_VERSION
ETCD_DIR=$CACHE_ROOT/etcd-$ETCD_VERSION
KWOK_DIR=$CACHE_ROOT/kwok-$KWOK_VERSION
KUBECTL=$KUBE_DIR/bin/kubectl
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok"

# Progress goes to stderr; stdout is kept for eval-able output.
say() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=hack/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------


kube_ldflags() {
	local v=$KUBE_VERSION minor pkg ld="-s -w"
	minor=${v#v1.}
	minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
	done
	printf '%s' "$ld"
}


build_kube() {
	local bin=$KUBE_DIR/bin t missing=
	for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
		[[ -x $bin/$t ]] || missing=1
	done
	if [[ -f $KUBE_DIR/.stamp && -z $missing ]]; then return 0; fi
	local t0=$SECONDS
	check_go "the control plane"
	mkdir -p "$bin"
	say "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION from Go modules"
	say "  (first time on this machine: ~15-30 min on 2 cores; afterwards cached in $KUBE_DIR)"
	rm -f "$KUBE_DIR/.stamp"
	(
		cd "$REPO_ROOT/tools/k8s"
		run_logged "kubernetes $KUBE_VERSION" "$KUBE_DIR/build.log" \
			go_env go build -p "$(nproc 2>/dev/null || echo 2)" -ldflags "$(kube_ldflags)" -o "$bin/" \
			k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
			k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
	)
	"$bin/kube-apiserver" --version >&2
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$KUBE_DIR/.stamp"
}

build_etcd() {
	if [[ -f $ETCD_DIR/.stamp && -x $ETCD_DIR/bin/etcd ]]; then return 0; fi
	local t0=$SECONDS
	check_go "the control plane"
	mkdir -p "$ETCD_DIR/bin"
	say "building etcd $ETCD_VERSION from Go modules (~1-3 min)"
	(
		cd "$REPO_ROOT/tools/etcd"
		run_logged "etcd $ETCD_VERSION" "$ETCD_DIR/build.log" \
			go_env go build -ldflags "-s -w" -o "$ETCD_DIR/bin/etcd" go.etcd.io/etcd/server/v3
	)
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$ETCD_DIR/.stamp"
}

build_kwok() {
	if [[ -f $KWOK_DIR/.stamp && -x $KWOK_DIR/bin/kwok ]]; then return 0; fi
	local t0=$SECONDS
	check_go "the control plane"
	mkdir -p "$KWOK_DIR/bin"
	say "building kwok $KWOK_VERSION from Go modules (~2-5 min)"
	(
		cd "$KWOK_DIR" # outside any module: plain `go install pkg@version`
		run_logged "kwok $KWOK_VERSION" "$KWOK_DIR/build.log" \
			go_env GOBIN="$KWOK_DIR/bin" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
	)
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$KWOK_DIR/.stamp"
}

cmd_build() {
	[[ -n $KUBE_VERSION && -n $ETCD_VERSION ]] || die "cannot read pinned versions from tools/k8s/go.mod and tools/etcd/go.mod"
	mkdir -p "$CACHE_ROOT"
	exec 8>"$CACHE_ROOT/.build.lock"
	if ! flock -n 8; then
		say "another build is running (lock $CACHE_ROOT/.build.lock); waiting for it"
		flock 8
	fi
	build_etcd
	build_kwok
	build_kube
	exec 8>&-
}

# ---------------------------------------------------------------------------
# cluster naming, ports, state
# ---------------------------------------------------------------------------
set_cluster() { # NAME
	NAME=${1:-demo}
	[[ $NAME =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "invalid cluster name '$NAME' (use [a-z0-9-])"
	STATE=$CLUSTER_ROOT/$NAME
	PKI=$STATE/pki
	RUN=$STATE/run
	LOGS=$STATE/logs
	KUBECONFIG_FILE=$STATE/admin.kubeconfig
	local api etcd peer base
	case $NAME in
	demo) api=16443 etcd=16379 peer=16380 ;;
	test) api=26443 etcd=26379 peer=26380 ;;
	bench) api=27443 etcd=27379 peer=27380 ;;
	*)
		base=$((20000 + ($(printf '%s' "$NAME" | cksum | cut -d' ' -f1) % 1000) * 10))
		api=$base etcd=$((base + 1)) peer=$((base + 2))
		;;
	esac
	API_PORT=${API_PORT:-$api}
	ETCD_PORT=${ETCD_PORT:-$etcd}
	ETCD_PEER_PORT=${ETCD_PEER_PORT:-$peer}
	local p
	for p in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
		if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1024 || p > 65535)); then
			die "invalid port '$p' (need 1024-65535)"
		fi
	done
	[[ $API_PORT != "$ETCD_PORT" && $API_PORT != "$ETCD_PEER_PORT" && $ETCD_PORT != "$ETCD_PEER_PORT" ]] ||
		die "API_PORT, ETCD_PORT and ETCD_PEER_PORT must differ"
}

# Ports a cluster was started with (so down/status/env ignore later env changes).
load_ports() {
	if [[ -f $STATE/ports.env ]]; then
		# shellcheck disable=SC1091
		. "$STATE/ports.env"
	fi
}

pidfile() { printf '%s/%s.pid' "$RUN" "$1"; }

# A process counts as alive unless it is gone or a zombie (the reaper of
# orphaned daemons, PID 1 here, may take a while to collect them).
alive() { # pid
	local state
	state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

# PID of a component if its pidfile names a live process running that binary.
component_pid() { # component
	local f pid
	f=$(pidfile "$1")
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	alive "$pid" || return 1
	# guard against PID reuse: the process must be the binary we started
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "/$1 " || return 1
	printf '%s' "$pid"
}

api_curl() { # path
	curl -sS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://127.0.0.1:$API_PORT$1"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kc() { "$KUBECTL" --kubeconfig="$KUBECONFIG_FILE" "$@"; }

# ---------------------------------------------------------------------------
# stop
# ---------------------------------------------------------------------------
stop_component() { # component
	local c=$1 pid i
	if pid=$(component_pid "$c"); then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do # up to 10 s
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			say "  $c (pid $pid) did not stop in 10s; killing"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
			sleep 0.2
		fi
		say "  stopped $c (pid $pid)"
	fi
	rm -f "$(pidfile "$c")"
}

stop_all() {
	local c
	# reverse start order: clients first, etcd last
	for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop_component "$c"
	done
}

# ---------------------------------------------------------------------------
# PKI and kubeconfigs
# ---------------------------------------------------------------------------
write_openssl_cnf() {
	cat >"$PKI/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

new_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

issue_cert() { # name subject extension-section
	new_key "$PKI/$1.key"
	openssl req -new -config "$PKI/openssl.cnf" -key "$PKI/$1.key" -subj "$2" -out "$PKI/$1.csr"
	openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days 3650 \
		-extfile "$PKI/openssl.cnf" -extensions "$3" -out "$PKI/$1.crt" 2>/dev/null
	rm -f "$PKI/$1.csr"
}

pki_ok() {
	local n
	for n in ca apiserver admin kube-controller-manager kube-scheduler; do
		[[ -f $PKI/$n.crt && -f $PKI/$n.key ]] || return 1
		openssl x509 -in "$PKI/$n.crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
	done
	[[ -f $PKI/sa.key && -f $PKI/sa.pub ]]
}

make_pki() {
	if pki_ok; then return 0; fi
	say "generating PKI in $PKI"
	rm -rf "$PKI"
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	write_openssl_cnf
	new_key "$PKI/ca.key"
	openssl req -x509 -new -config "$PKI/openssl.cnf" -extensions v3_ca -key "$PKI/ca.key" \
		-subj "/CN=runbook-operator-$NAME-ca" -days 3650 -out "$PKI/ca.crt"
	issue_cert apiserver "/CN=kube-apiserver" server
	issue_cert admin "/O=system:masters/CN=runbook-admin" client
	issue_cert kube-controller-manager "/CN=system:kube-controller-manager" client
	issue_cert kube-scheduler "/CN=system:kube-scheduler" client
	new_key "$PKI/sa.key"
	openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
	# every key and cert must parse and chain to the CA
	local n
	for n in apiserver admin kube-controller-manager kube-scheduler; do
		openssl pkey -in "$PKI/$n.key" -noout
		openssl verify -CAfile "$PKI/ca.crt" "$PKI/$n.crt" >/dev/null
	done
	openssl pkey -in "$PKI/sa.key" -noout
}

b64() { base64 <"$1" | tr -d '\n'; }

write_kubeconfig() { # identity output-file
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: runbook-$NAME
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $1
  user:
    client-certificate-data: $(b64 "$PKI/$1.crt")
    client-key-data: $(b64 "$PKI/$1.key")
contexts:
- name: runbook-$NAME
  context:
    cluster: runbook-$NAME
    user: $1
    namespace: default
current-context: runbook-$NAME
EOF
	chmod 600 "$2"
}

# ---------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------
# Start a component in its own session (so `down` can kill its whole process
# group), with output in logs/<component>.log and its pid in run/<component>.pid.
spawn() { # component command...
	local c=$1
	shift
	printf '\n==== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$LOGS/$c.log"
	# fds 8/9 hold our flock locks: the daemons must not inherit them
	setsid "$@" >>"$LOGS/$c.log" 2>&1 </dev/null 8>&- 9>&- &
	echo $! >"$(pidfile "$c")"
}

fail_with_log() { # component message
	printf '[cluster] ---- last lines of %s ----\n' "$LOGS/$1.log" >&2
	tail -n 30 "$LOGS/$1.log" >&2 || true
	die "$2 (full log: $LOGS/$1.log)"
}

# Poll a check command until it succeeds; fail fast if the component died.
wait_for() { # component description command...
	local c=$1 what=$2 deadline=$((SECONDS + TIMEOUT))
	shift 2
	until "$@" >/dev/null 2>&1; do
		component_pid "$c" >/dev/null || fail_with_log "$c" "$c exited while waiting for $what"
		((SECONDS < deadline)) || fail_with_log "$c" "timed out after ${TIMEOUT}s waiting for $what"
		sleep 0.5
	done
}

etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
api_ready() { [[ $(api_curl /readyz 2>/dev/null) == ok ]]; }
default_sa_exists() { kc -n default get serviceaccount default; }
nodes_ready() {
	kc wait --for=condition=Ready node/kwok-node-0 node/kwok-node-1 node/kwok-node-2 --timeout=2s
}
# kwok manages a node (and its pods) only while it holds the node's Lease.
leases_held() {
	local n holders
	holders=$(kc -n kube-node-lease get lease kwok-node-0 kwok-node-1 kwok-node-2 \
		-o jsonpath='{range .items[*]}{.spec.holderIdentity}{" "}{end}') || return 1
	for n in $holders; do [[ $n == "$1" ]] || return 1; done
	[[ $(wc -w <<<"$holders") -eq 3 ]]
}
kwok_id() { # holder id kwok uses, read from its log
	grep -o '"id":"[^"]*"' "$LOGS/kwok.log" | tail -n1 | cut -d'"' -f4
}
kwok_owns_nodes() { local id; id=$(kwok_id) && [[ -n $id ]] && leases_held "$id"; }
nodes_untainted() {
	local t
	t=$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.spec.taints}{end}') || return 1
	[[ -z $t ]]
}

start_etcd() {
	# etcd reads every ETCD_* environment variable as a flag (our own
	# ETCD_PORT included): start it with none of them.
	local v unset=()
	for v in $(compgen -e); do
		if [[ $v == ETCD_* ]]; then unset+=(-u "$v"); fi
	done
	spawn etcd env "${unset[@]}" "$ETCD_DIR/bin/etcd" \
		--name="$NAME" --data-dir="$STATE/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster="$NAME=http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster-state=new \
		--unsafe-no-fsync --log-level=warn
}

start_apiserver() {
	# OwnerReferencesPermissionEnforcement (on in OpenShift and hardened clusters) makes an
	# owner reference with blockOwnerDeletion need `update` on the owner's finalizers, so the
	# Helm chart's RBAC is tested against the stricter rule.
	# The advertise address is pinned to loopback (works without a default
	# route); the kubernetes Service endpoints are then not reconciled, which
	# nothing here needs because no pod really runs.
	spawn kube-apiserver "$KUBE_DIR/bin/kube-apiserver" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address=127.0.0.1 --secure-port="$API_PORT" \
		--advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16 \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=OwnerReferencesPermissionEnforcement \
		--allow-privileged=true --profiling=false --v=1
}

start_controller_manager() {
	write_kubeconfig kube-controller-manager "$STATE/kube-controller-manager.kubeconfig"
	spawn kube-controller-manager "$KUBE_DIR/bin/kube-controller-manager" \
		--kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
		--leader-elect=false --secure-port=0 \
		--use-service-account-credentials=true \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--controllers='*' --profiling=false --v=1 \
		${KCM_API_QPS:+--kube-api-qps="$KCM_API_QPS" --kube-api-burst="$((2 * KCM_API_QPS))"}
}

start_scheduler() {
	write_kubeconfig kube-scheduler "$STATE/kube-scheduler.kubeconfig"
	cat >"$STATE/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $STATE/kube-scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF
	spawn kube-scheduler "$KUBE_DIR/bin/kube-scheduler" \
		--config="$STATE/kube-scheduler.yaml" --secure-port=0 --v=1
}

start_kwok() {
	# KWOK_WORKDIR isolates kwok from ~/.kwok (whose kwok.yaml it would load).
	# No --node-port / --server-address: kwok then serves no HTTP at all.
	mkdir -p "$STATE/kwok"
	cp "$STAGES_FILE" "$STATE/kwok-stages.yaml"
	# Leases left by an earlier kwok would make this one wait for them to
	# expire (40 s) before it manages those nodes and their pods.
	kc -n kube-node-lease delete lease kwok-node-0 kwok-node-1 kwok-node-2 \
		--ignore-not-found >/dev/null
	spawn kwok env KWOK_WORKDIR="$STATE/kwok" "$KWOK_DIR/bin/kwok" \
		--kubeconfig="$KUBECONFIG_FILE" --config="$STATE/kwok-stages.yaml" \
		--manage-all-nodes=true --node-lease-duration-seconds=40 \
		--cidr=10.244.0.0/16 --node-ip=10.240.0.10
}

create_nodes() {
	local i
	for i in 0 1 2; do
		cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
---
EOF
	done | kc apply -f - >/dev/null
}

print_env() {
	printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_FILE"
	# shellcheck disable=SC2016 # $PATH is expanded by whoever evals this
	printf 'export PATH=%s:$PATH\n' "$KUBE_DIR/bin"
}

cluster_healthy() {
	local c
	[[ -f $KUBECONFIG_FILE ]] || return 1
	for c in $COMPONENTS; do component_pid "$c" >/dev/null || return 1; done
	api_ready
}

cmd_up() {
	local t0=$SECONDS
	cmd_build
	mkdir -p "$CLUSTER_ROOT"
	exec 9>"$CLUSTER_ROOT/.$NAME.lock"
	flock 9

	# Reuse a healthy cluster (started with the same ports).
	local want_api=$API_PORT want_etcd=$ETCD_PORT want_peer=$ETCD_PEER_PORT
	load_ports
	if [[ $API_PORT == "$want_api" && $ETCD_PORT == "$want_etcd" && $ETCD_PEER_PORT == "$want_peer" ]] &&
		cluster_healthy; then
		if ! cmp -s "$STAGES_FILE" "$STATE/kwok-stages.yaml"; then
			say "hack/kwok/stages.yaml changed; restarting kwok"
			stop_component kwok
			start_kwok
			wait_for kwok "kwok to take over the node leases" kwok_owns_nodes
		fi
		say "cluster '$NAME' already running on https://127.0.0.1:$API_PORT; reusing it"
		print_env
		printf '# kubectl: %s\n' "$KUBECTL"
		return 0
	fi
	API_PORT=$want_api ETCD_PORT=$want_etcd ETCD_PEER_PORT=$want_peer

	say "starting cluster '$NAME' (state $STATE, API https://127.0.0.1:$API_PORT, etcd $ETCD_PORT/$ETCD_PEER_PORT)"
	mkdir -p "$STATE" "$RUN" "$LOGS"
	stop_all # leftovers of an earlier run, by pidfile only
	local p
	for p in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
		port_busy "$p" && die "port $p is in use by another process; pick other ports with API_PORT / ETCD_PORT / ETCD_PEER_PORT"
	done
	cat >"$STATE/ports.env" <<EOF
API_PORT=$API_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
EOF
	# from here on, a failure stops whatever was started (logs stay)
	trap 'rc=$?; if ((rc != 0)); then say "up failed; stopping the components it started"; stop_all; fi' EXIT
	if [[ ${KEEP_DATA:-0} != 1 ]]; then rm -rf "$STATE/etcd"; fi
	make_pki
	write_kubeconfig admin "$KUBECONFIG_FILE"

	start_etcd
	wait_for etcd "etcd /health on :$ETCD_PORT" etcd_healthy
	say "  etcd $ETCD_VERSION healthy ($((SECONDS - t0))s)"

	start_apiserver
	wait_for kube-apiserver "kube-apiserver /readyz on :$API_PORT" api_ready
	say "  kube-apiserver $KUBE_VERSION ready ($((SECONDS - t0))s)"

	start_controller_manager
	start_scheduler
	start_kwok
	create_nodes
	wait_for kwok "nodes kwok-node-0..2 Ready" nodes_ready
	wait_for kwok "kwok to hold the node leases" kwok_owns_nodes
	wait_for kube-controller-manager "not-ready taints removed from the nodes" nodes_untainted
	wait_for kube-controller-manager "ServiceAccount default/default" default_sa_exists
	component_pid kube-scheduler >/dev/null || fail_with_log kube-scheduler "kube-scheduler exited"
	say "  controller-manager, scheduler, kwok up; 3 nodes Ready ($((SECONDS - t0))s)"

	trap - EXIT
	say "cluster '$NAME' is up in $((SECONDS - t0))s (logs: $LOGS)"
	print_env
	printf '# kubectl: %s\n' "$KUBECTL"
}

cmd_down() { # [--purge]
	mkdir -p "$CLUSTER_ROOT"
	exec 9>"$CLUSTER_ROOT/.$NAME.lock"
	flock 9
	if [[ -d $RUN ]]; then
		say "stopping cluster '$NAME'"
		stop_all
	else
		say "cluster '$NAME' has no state; nothing to stop"
	fi
	if [[ ${1:-} == --purge ]]; then
		rm -rf "$STATE" "$CLUSTER_ROOT/.$NAME.lock"
		say "removed $STATE"
	fi
}

cmd_status() {
	load_ports
	local c pid up=1
	printf 'cluster %s  (state %s)\n' "$NAME" "$STATE"
	for c in $COMPONENTS; do
		if pid=$(component_pid "$c"); then
			printf '  %-24s running (pid %s)\n' "$c" "$pid"
		else
			printf '  %-24s stopped\n' "$c"
			up=0
		fi
	done
	if [[ -f $PKI/admin.crt ]] && api_ready; then
		printf '  %-24s ok  https://127.0.0.1:%s\n' "/readyz" "$API_PORT"
		[[ -x $KUBECTL ]] && kc get nodes 2>/dev/null | sed 's/^/    /'
	else
		printf '  %-24s not answering on :%s\n' "/readyz" "$API_PORT"
		up=0
	fi
	((up)) || return 3
}

cmd_env() {
	load_ports
	[[ -f $KUBECONFIG_FILE ]] || say "warning: $KUBECONFIG_FILE does not exist yet (run: hack/cluster.sh up $NAME)"
	print_env
}

# ---------------------------------------------------------------------------
# smoke: verify the kwok stages on a running cluster
# ---------------------------------------------------------------------------
cmd_smoke() {
	load_ports
	cluster_healthy || die "cluster '$NAME' is not running (hack/cluster.sh up $NAME)"
	local ns t0 dt
	ns=smoke-$(date +%s)-$$
	kc create namespace "$ns" >/dev/null
	# shellcheck disable=SC2064
	trap "'$KUBECTL' --kubeconfig='$KUBECONFIG_FILE' delete namespace '$ns' --wait=false >/dev/null 2>&1 || true" EXIT
	local w="--timeout=${TIMEOUT}s"

	t0=$SECONDS
	kc -n "$ns" create deployment web --image=registry.invalid/web:1 --replicas=2 >/dev/null
	kc -n "$ns" wait --for=condition=Available deployment/web "$w" >/dev/null
	[[ $(kc -n "$ns" get deployment web -o jsonpath='{.status.readyReplicas}') == 2 ]] || die "deployment web: readyReplicas != 2"
	say "ok: Deployment with 2 replicas Available ($((SECONDS - t0))s)"

	t0=$SECONDS
	kc -n "$ns" create job ok --image=registry.invalid/job:1 >/dev/null
	kc -n "$ns" wait --for=condition=Complete job/ok "$w" >/dev/null
	say "ok: Job completed ($((SECONDS - t0))s)"

	t0=$SECONDS
	kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {sim.runbook.dev/outcome: fail}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: registry.invalid/job:1}]
EOF
	kc -n "$ns" wait --for=condition=Failed job/fails "$w" >/dev/null
	local code
	code=$(kc -n "$ns" get pods -l job-name=fails -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
	[[ $code == 1 ]] || die "failed Job pod exit code is '$code', expected 1"
	say "ok: Job with outcome=fail Failed, pod exit code 1 ($((SECONDS - t0))s)"

	t0=$SECONDS
	kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: says}
spec:
  template:
    metadata:
      annotations: {sim.runbook.dev/termination-message: "healthy=true\\nlag=3", sim.runbook.dev/termination-message-side: "{\\"a\\": 1}"}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: registry.invalid/job:1}, {name: side, image: registry.invalid/job:1}]
EOF
	kc -n "$ns" wait --for=condition=Complete job/says "$w" >/dev/null
	local said
	said=$(kc -n "$ns" get pods -l job-name=says -o go-template='{{range (index .items 0).status.containerStatuses}}{{.name}}={{.state.terminated.message}};{{end}}')
	[[ $said == $'main=healthy=true\nlag=3;side={"a": 1};' || $said == $'side={"a": 1};main=healthy=true\nlag=3;' ]] ||
		die "Job pod termination messages are '$said', expected main: healthy=true<newline>lag=3, side: {\"a\": 1}"
	say "ok: Job pod ends with the termination messages its annotations give ($((SECONDS - t0))s)"

	t0=$SECONDS
	kc -n "$ns" apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: slow}
spec:
  template:
    metadata:
      annotations: {sim.runbook.dev/run-for: 3s}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: registry.invalid/job:1}]
EOF
	kc -n "$ns" wait --for=condition=Complete job/slow "$w" >/dev/null
	dt=$((SECONDS - t0))
	((dt >= 3)) || die "job with run-for=3s completed after ${dt}s"
	say "ok: Job with run-for=3s completed after ${dt}s"
}

# ---------------------------------------------------------------------------
main() {
	local cmd=${1:-help}
	(($#)) && shift
	case $cmd in
	build) cmd_build ;;
	up)
		set_cluster "${1:-}"
		cmd_up
		;;
	down)
		local purge=
		if [[ ${1:-} == --purge ]]; then purge=--purge && shift; fi
		[[ ${2:-} == --purge ]] && purge=--purge
		set_cluster "${1:-}"
		cmd_down $purge
		;;
	status)
		set_cluster "${1:-}"
		cmd_status
		;;
	env)
		set_cluster "${1:-}"
		cmd_env
		;;
	smoke)
		set_cluster "${1:-}"
		cmd_smoke
		;;
	kubectl-path)
		printf '%s\n' "$KUBECTL"
		[[ -x $KUBECTL ]] || { say "not built yet: run hack/cluster.sh build"; return 1; }
		;;
	help | -h | --help) usage ;;
	*) usage >&2 && exit 2 ;;
	esac
}

main "$@"
