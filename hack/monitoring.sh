#!/usr/bin/env bash
# Prometheus and Alertmanager beside the demo cluster (`make run`), as local processes built by
# hack/tools.sh. Prometheus scrapes the operator's /metrics and itself and evaluates the chart's
# operator alerts and the example incident alerts (deploy/prometheus/rules/); Alertmanager
# routes every alert to the operator's receiver with a bearer token. Run `hack/monitoring.sh help`.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: hack/monitoring.sh COMMAND [NAME]

  up [NAME]      start Prometheus and Alertmanager for cluster NAME (default: demo), replacing
                 any left running; prints their URLs and, on stdout, eval-able lines:
                 PROMETHEUS_URL, ALERTMANAGER_URL, ALERTS_ADDR, ALERTS_TOKEN_FILE (the
                 operator's --alerts-addr and --alerts-token-file)
  down [NAME]    stop them
  help           this text

Environment (ports on 127.0.0.1):
  PROMETHEUS_PORT     default 19090
  ALERTMANAGER_PORT   default 19093
  ALERTS_PORT         the operator's alert receiver, default 19095
  OPERATOR_PROBE      where the operator serves /metrics, default 127.0.0.1:8080
EOF
}

say() { printf '[monitoring] %s\n' "$*" >&2; }
die() { printf '[monitoring] ERROR: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-19093}
ALERTS_PORT=${ALERTS_PORT:-19095}
OPERATOR_PROBE=${OPERATOR_PROBE:-127.0.0.1:8080}

state_dir() { printf '%s/.cluster/%s/monitoring' "$ROOT" "$1"; }

stop() { # dir name
	local pidfile=$1/$2.pid pid
	[[ -f $pidfile ]] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidfile"
}

wait_ready() { # name url log
	for _ in $(seq 300); do
		if curl -fsS -o /dev/null "$2/-/ready" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	tail -n 20 "$3" >&2
	die "$1 did not become ready at $2 (log: $3)"
}

# The groups of a PrometheusRule file: everything under its top-level `spec:` (the last key),
# unindented once.
rule_groups() { sed -n '/^spec:/,$p' "$1" | sed '1d; s/^  //'; }

cmd_up() {
	local name=${1:-demo} dir prometheus alertmanager f n=0
	dir=$(state_dir "$name")
	eval "$("$ROOT/hack/tools.sh" env)"
	prometheus=$PROMETHEUS
	alertmanager=$ALERTMANAGER
	mkdir -p "$dir/rules"
	stop "$dir" prometheus
	stop "$dir" alertmanager
	# The receiver's bearer token, kept across restarts of the demo.
	if [[ ! -s $dir/alerts-token ]]; then
		(umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/alerts-token")
	fi
	rm -f "$dir"/rules/*.yaml
	cp "$ROOT/charts/runbook-operator/files/prometheus-rules.yaml" "$dir/rules/runbook-operator.yaml"
	for f in "$ROOT"/deploy/prometheus/rules/*.yaml; do
		rule_groups "$f" >"$dir/rules/$(basename "$f")"
		n=$((n + 1))
	done
	cat >"$dir/alertmanager.yml" <<EOF
# Every alert goes to the operator's receiver; Runbooks decide which alerts start them.
route:
  receiver: runbook-operator
  group_by: [alertname, namespace]
  group_wait: 5s
  group_interval: 30s
  repeat_interval: 4h
receivers:
  - name: runbook-operator
    webhook_configs:
      - url: http://127.0.0.1:$ALERTS_PORT/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials_file: $dir/alerts-token
EOF
	cat >"$dir/prometheus.yml" <<EOF
global: {scrape_interval: 15s, evaluation_interval: 15s}
rule_files: ["$dir/rules/*.yaml"]
alerting:
  alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$ALERTMANAGER_PORT"]}]}]
scrape_configs:
  - job_name: runbook-operator
    honor_labels: true  # keep the operator's own namespace labels (see the chart's rules)
    static_configs: [{targets: ["$OPERATOR_PROBE"]}]
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROMETHEUS_PORT"]}]
EOF
	"$PROMTOOL" check config "$dir/prometheus.yml" >"$dir/promtool.log" 2>&1 || {
		cat "$dir/promtool.log" >&2
		die "promtool rejects $dir/prometheus.yml or its rules"
	}
	(
		cd "$dir"
		nohup "$alertmanager" --config.file=alertmanager.yml --storage.path=alertmanager-data \
			--web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address= \
			>alertmanager.log 2>&1 &
		echo $! >alertmanager.pid
		nohup "$prometheus" --config.file=prometheus.yml --storage.tsdb.path=prometheus-data \
			--web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >prometheus.log 2>&1 &
		echo $! >prometheus.pid
	)
	wait_ready alertmanager "http://127.0.0.1:$ALERTMANAGER_PORT" "$dir/alertmanager.log"
	wait_ready prometheus "http://127.0.0.1:$PROMETHEUS_PORT" "$dir/prometheus.log"
	say "Prometheus   http://127.0.0.1:$PROMETHEUS_PORT  (the operator's alerts and $n example rule files; log $dir/prometheus.log)"
	say "Alertmanager http://127.0.0.1:$ALERTMANAGER_PORT  (routes to the operator at 127.0.0.1:$ALERTS_PORT; log $dir/alertmanager.log)"
	printf 'export PROMETHEUS_URL=http://127.0.0.1:%s\n' "$PROMETHEUS_PORT"
	printf 'export ALERTMANAGER_URL=http://127.0.0.1:%s\n' "$ALERTMANAGER_PORT"
	printf 'export ALERTS_ADDR=127.0.0.1:%s\n' "$ALERTS_PORT"
	printf 'export ALERTS_TOKEN_FILE=%q\n' "$dir/alerts-token"
}

cmd_down() {
	local dir
	dir=$(state_dir "${1:-demo}")
	stop "$dir" prometheus
	stop "$dir" alertmanager
	say "stopped Prometheus and Alertmanager of ${1:-demo}"
}

main() {
	local cmd=${1:-help}
	shift || true
	case $cmd in
	up) cmd_up "$@" ;;
	down) cmd_down "$@" ;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
