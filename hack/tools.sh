#!/usr/bin/env bash
# Chart and monitoring tooling for runbook-operator: helm, kubeconform, promtool, and the
# Prometheus and Alertmanager the e2e suite and `make run` start, built once per machine from
# pinned Go modules into the same version-keyed cache as hack/cluster.sh (no prebuilt binary
# is downloaded: only the Go module proxy is reachable here), plus the
# prometheus-operator CRDs (ServiceMonitor, PrometheusRule) taken from their Go module so the
# chart's monitoring objects can be schema-checked. Run `hack/tools.sh help`.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: hack/tools.sh COMMAND

  build   build missing tools into the cache (helm, kubeconform, promtool, prometheus,
          alertmanager) and fetch the prometheus-operator CRDs; a no-op when all are cached
  env     print eval-able export lines: PATH with the tools' dirs, and HELM, KUBECONFORM,
          PROMTOOL, MONITORING_CRDS (the dir holding the prometheus-operator CRDs),
          PROMETHEUS and ALERTMANAGER (the binaries the e2e suite and `make run` start)
  paths   print one "name path" line per tool (fails when one is not built)
  help    this text

Environment:
  RUNBOOK_OPERATOR_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/runbook-operator),
                           shared with hack/cluster.sh
EOF
}

CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}

# Pinned versions: bump here, the cache key follows.
HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
PROMTOOL_VERSION=v0.316.0 # the Go module version of Prometheus v3.16
# Prometheus itself (same module version as promtool) and Alertmanager: the e2e incident test
# and `make run` start them as local processes.
PROMETHEUS_VERSION=$PROMTOOL_VERSION
ALERTMANAGER_VERSION=v0.35.0
# prometheus-operator, for the monitoring.coreos.com CRDs. The module proxy answers
# "not available" for v0.95.2 of the root module and lists v0.85.0 as its newest; the
# ServiceMonitor and PrometheusRule kinds are monitoring.coreos.com/v1 in both.
PROMOP_VERSION=v0.85.0

HELM_DIR=$CACHE_ROOT/helm-$HELM_VERSION
KUBECONFORM_DIR=$CACHE_ROOT/kubeconform-$KUBECONFORM_VERSION
PROMTOOL_DIR=$CACHE_ROOT/promtool-$PROMTOOL_VERSION
PROMOP_DIR=$CACHE_ROOT/prometheus-operator-crds-$PROMOP_VERSION
PROMETHEUS_DIR=$CACHE_ROOT/prometheus-$PROMETHEUS_VERSION
ALERTMANAGER_DIR=$CACHE_ROOT/alertmanager-$ALERTMANAGER_VERSION
PROMOP_CRDS="monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml"

# Progress goes to stderr; stdout is kept for eval-able output.
say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=hack/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"




# go install PKG@VERSION into DIR/bin, once; DIR/.stamp records when and how long.
build_go_tool() { # name dir package version [function printing extra ldflags]
	local name=$1 dir=$2 pkg=$3 version=$4 ldflags="-s -w" t0=$SECONDS
	if [[ -f $dir/.stamp && -x $dir/bin/$name ]]; then return 0; fi
	check_go "$name"
	if [[ -n ${5:-} ]]; then ldflags="$ldflags $("$5")"; fi
	mkdir -p "$dir/bin"
	rm -f "$dir/.stamp"
	say "building $name $version from Go modules ($pkg)"
	(
		cd "$dir" # outside any module: plain `go install pkg@version`
		run_logged "$name $version" "$dir/build.log" \
			go_env GOBIN="$dir/bin" go install -ldflags "$ldflags" "$pkg@$version"
	)
	[[ -x $dir/bin/$name ]] || die "go install succeeded but $dir/bin/$name is missing"
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$dir/.stamp"
}

# What helm's own Makefile stamps in: its version, and the Kubernetes version of its client-go
# (major+1 of v0.X.Y, minor X) as the default for `.Capabilities.KubeVersion` and lint.
# Without them a `go install` helm reports "v3.21" and assumes Kubernetes v1.20.
helm_ldflags() {
	local gomod client minor
	check_go "helm and promtool"
	gomod=$(cd "$CACHE_ROOT" && go_env GO111MODULE=on go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -n $gomod && -f $gomod ]] || die "cannot download helm.sh/helm/v3@$HELM_VERSION from the Go module proxy"
	client=$(sed -n 's|^[[:space:]]*k8s.io/client-go[[:space:]]\{1,\}v0\.\([0-9]\{1,\}\)\..*|\1|p' "$gomod" | head -n1)
	[[ -n $client ]] || die "cannot read the k8s.io/client-go version from $gomod"
	minor=$client
	local v=helm.sh/helm/v3
	printf '%s' "-X $v/internal/version.version=$HELM_VERSION -X $v/internal/version.gitTreeState=clean"
	printf ' %s' "-X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$minor"
	printf ' %s' "-X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$minor"
}

# The version both binaries report (`--version`, the build_info metric), as their release builds
# stamp it: v0.316.0 of the Go module is Prometheus 3.16.0.
prometheus_ldflags() {
	local rest=${PROMETHEUS_VERSION#v0.} minor
	minor=${rest%%.*}
	printf '%s' "-X github.com/prometheus/common/version.Version=$((minor / 100)).$((minor % 100)).${rest#*.}"
}
alertmanager_ldflags() { printf '%s' "-X github.com/prometheus/common/version.Version=${ALERTMANAGER_VERSION#v}"; }

# Alertmanager embeds its built web UI (ui/app/dist), which its module source does not carry,
# so `go install` fails. Build it from a copy of the module source with a one-page stand-in
# for the UI; the HTTP API (what the tests and the demo use) is unaffected.
build_alertmanager() {
	local dir=$ALERTMANAGER_DIR t0=$SECONDS moddir page
	if [[ -f $dir/.stamp && -x $dir/bin/alertmanager ]]; then return 0; fi
	check_go "alertmanager"
	mkdir -p "$dir/bin"
	rm -f "$dir/.stamp"
	say "building alertmanager $ALERTMANAGER_VERSION from Go modules (github.com/prometheus/alertmanager, without its web UI)"
	moddir=$(cd "$dir" && go_env GO111MODULE=on go mod download -json \
		"github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" 2>"$dir/build.log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') || true
	[[ -n $moddir && -d $moddir ]] ||
		die "cannot download github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION; log: $dir/build.log"
	rm -rf "$dir/src"
	cp -r "$moddir" "$dir/src"
	chmod -R u+w "$dir/src"
	page='<!doctype html><title>Alertmanager</title><p>This Alertmanager was built without its web UI; its HTTP API is under /api/v2/.</p>'
	for ui in elm mantine; do
		mkdir -p "$dir/src/ui/app/dist/$ui"
		printf '%s\n' "$page" >"$dir/src/ui/app/dist/$ui/index.html"
	done
	(
		cd "$dir/src"
		run_logged "alertmanager $ALERTMANAGER_VERSION" "$dir/build.log" \
			go_env go build -o "$dir/bin/alertmanager" -ldflags "-s -w $(alertmanager_ldflags)" ./cmd/alertmanager
	)
	rm -rf "$dir/src"
	[[ -x $dir/bin/alertmanager ]] || die "go build succeeded but $dir/bin/alertmanager is missing"
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$dir/.stamp"
}

# The ServiceMonitor and PrometheusRule CRDs, copied out of the prometheus-operator Go module
# (the module proxy serves its whole source tree, CRD YAML included).
fetch_promop_crds() {
	local f missing='' t0=$SECONDS moddir
	for f in $PROMOP_CRDS; do [[ -f $PROMOP_DIR/$f ]] || missing=1; done
	if [[ -f $PROMOP_DIR/.stamp && -z $missing ]]; then return 0; fi
	check_go "helm and promtool"
	mkdir -p "$PROMOP_DIR"
	say "fetching prometheus-operator $PROMOP_VERSION CRDs from its Go module"
	moddir=$(cd "$PROMOP_DIR" && go_env GO111MODULE=on go mod download -json \
		"github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION" 2>"$PROMOP_DIR/fetch.log" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p') ||
		true
	[[ -n $moddir && -d $moddir ]] || {
		tail -n 20 "$PROMOP_DIR/fetch.log" >&2
		die "cannot download github.com/prometheus-operator/prometheus-operator@$PROMOP_VERSION; full log: $PROMOP_DIR/fetch.log"
	}
	for f in $PROMOP_CRDS; do
		[[ -f $moddir/example/prometheus-operator-crd/$f ]] ||
			die "$f is not in $moddir/example/prometheus-operator-crd/"
		install -m 0644 "$moddir/example/prometheus-operator-crd/$f" "$PROMOP_DIR/$f"
	done
	printf '%s build_seconds=%d\n' "$(date -u +%FT%TZ)" "$((SECONDS - t0))" >"$PROMOP_DIR/.stamp"
	say "  fetched CRDs in $((SECONDS - t0))s"
}

cmd_build() {
	mkdir -p "$CACHE_ROOT"
	# A lock of its own: a chart tool build need not wait for a cluster build.
	exec 8>"$CACHE_ROOT/.tools.lock"
	if ! flock -n 8; then
		say "another tools build is running (lock $CACHE_ROOT/.tools.lock); waiting for it"
		flock 8
	fi
	build_go_tool kubeconform "$KUBECONFORM_DIR" github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
	build_go_tool helm "$HELM_DIR" helm.sh/helm/v3/cmd/helm "$HELM_VERSION" helm_ldflags
	fetch_promop_crds
	[[ -f $PROMTOOL_DIR/.stamp ]] ||
		say "(promtool pulls in every Prometheus service discovery: its first build takes ~6 min on 2 cores)"
	build_go_tool promtool "$PROMTOOL_DIR" github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
	# Without the builtinassets tag the web UI is served from disk (absent here): the HTTP API
	# the tests use works, only the UI pages answer 404.
	build_go_tool prometheus "$PROMETHEUS_DIR" github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_VERSION" prometheus_ldflags
	build_alertmanager
	exec 8>&-
	say "helm, kubeconform, promtool, prometheus, alertmanager ready; use: eval \"\$(hack/tools.sh env)\""
}

check_built() {
	local bin
	for bin in "$HELM_DIR/bin/helm" "$KUBECONFORM_DIR/bin/kubeconform" "$PROMTOOL_DIR/bin/promtool" \
		"$PROMETHEUS_DIR/bin/prometheus" "$ALERTMANAGER_DIR/bin/alertmanager"; do
		[[ -x $bin ]] || die "${bin##*/} is not built ($bin missing): run \`make tools\` (hack/tools.sh build)"
	done
	[[ -f $PROMOP_DIR/.stamp ]] || die "prometheus-operator CRDs not fetched: run \`make tools\` (hack/tools.sh build)"
}

cmd_env() {
	check_built
	# shellcheck disable=SC2016 # $PATH expands where the line is eval'd
	printf 'export PATH="%s:%s:%s:$PATH"\n' "$HELM_DIR/bin" "$KUBECONFORM_DIR/bin" "$PROMTOOL_DIR/bin"
	printf 'export HELM=%q\n' "$HELM_DIR/bin/helm"
	printf 'export KUBECONFORM=%q\n' "$KUBECONFORM_DIR/bin/kubeconform"
	printf 'export PROMTOOL=%q\n' "$PROMTOOL_DIR/bin/promtool"
	printf 'export MONITORING_CRDS=%q\n' "$PROMOP_DIR"
	printf 'export PROMETHEUS=%q\n' "$PROMETHEUS_DIR/bin/prometheus"
	printf 'export ALERTMANAGER=%q\n' "$ALERTMANAGER_DIR/bin/alertmanager"
}

cmd_paths() {
	check_built
	printf 'helm %s\nkubeconform %s\npromtool %s\nmonitoring-crds %s\nprometheus %s\nalertmanager %s\n' \
		"$HELM_DIR/bin/helm" "$KUBECONFORM_DIR/bin/kubeconform" "$PROMTOOL_DIR/bin/promtool" "$PROMOP_DIR" \
		"$PROMETHEUS_DIR/bin/prometheus" "$ALERTMANAGER_DIR/bin/alertmanager"
}

main() {
	local cmd=${1:-help}
	case $cmd in
	build) cmd_build ;;
	env) cmd_env ;;
	paths) cmd_paths ;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
