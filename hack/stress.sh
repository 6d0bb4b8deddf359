#!/usr/bin/env bash
# `make test` under load: runs the whole suite several times while stress-ng keeps every CPU
# busy, and prints the tally. A test that fails only under load is a bug in the test (it
# sampled a state before it could exist) or in the code (a race): find which.
#
# stress-ng comes from the OS packages (Debian/Ubuntu: `apt-get download`, unpacked into the
# same version-keyed cache as hack/cluster.sh; nothing is installed system-wide, no root
# needed beyond apt's own download). A stress-ng already on PATH is used as it is.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: hack/stress.sh COMMAND

  build        fetch stress-ng into the cache (a no-op when cached or on PATH)
  path         print the stress-ng binary to run
  run [RUNS]   run `make test` RUNS times (default $STRESS_RUNS or 5), each beside
               `stress-ng --cpu $STRESS_CPU` (default: the number of CPUs); print each run's
               result and time, then the tally; exit non-zero unless every run passed
  help         this text

Environment:
  RUNBOOK_OPERATOR_CACHE   cache root (default ${XDG_CACHE_HOME:-~/.cache}/runbook-operator)
  STRESS_RUNS, STRESS_CPU  see `run`
  STRESS_LOGS              where each run's output goes (default .stress/)
EOF
}

CACHE_ROOT=${RUNBOOK_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runbook-operator}
STRESS_DIR=$CACHE_ROOT/stress-ng-os-packages
LOGS=${STRESS_LOGS:-.stress}

say() { printf '[stress] %s\n' "$*" >&2; }
die() {
	printf '[stress] ERROR: %s\n' "$*" >&2
	exit 1
}

stress_bin() {
	if command -v stress-ng >/dev/null; then
		command -v stress-ng
	elif [[ -x $STRESS_DIR/root/usr/bin/stress-ng ]]; then
		echo "$STRESS_DIR/root/usr/bin/stress-ng"
	else
		return 1
	fi
}

# Runs the cached stress-ng with the libraries unpacked beside it. It replaces the (sub)shell
# it runs in, so `stress ... &` gives the PID of stress-ng itself and `kill` stops it (a
# function run with & is a subshell whose child would outlive a kill of the subshell).
stress() {
	local bin
	bin=$(stress_bin) || die "stress-ng is not available: run hack/stress.sh build"
	LD_LIBRARY_PATH=$STRESS_DIR/root/usr/lib/x86_64-linux-gnu:$STRESS_DIR/root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
		exec "$bin" "$@"
}

build() {
	if stress_bin >/dev/null && (stress --version >/dev/null 2>&1); then return 0; fi
	command -v apt-get >/dev/null || die "no stress-ng on PATH and no apt-get to fetch it: install the stress-ng package"
	say "fetching stress-ng and the libraries this machine lacks from the OS packages into $STRESS_DIR"
	rm -rf "$STRESS_DIR"
	mkdir -p "$STRESS_DIR/debs" "$STRESS_DIR/root"
	local packages=(stress-ng) dep
	# Only the dependencies not installed here: the rest come from the system.
	while read -r dep; do
		dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q "install ok installed" || packages+=("$dep")
	done < <(apt-cache depends stress-ng | sed -n 's/^ *Depends: \([^ <]*\)$/\1/p' | sort -u)
	(cd "$STRESS_DIR/debs" && apt-get download "${packages[@]}" >"$STRESS_DIR/download.log" 2>&1) ||
		die "apt-get download ${packages[*]} failed; see $STRESS_DIR/download.log"
	local deb
	for deb in "$STRESS_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$STRESS_DIR/root"; done
	(stress --version >/dev/null) || die "the unpacked stress-ng does not start; see $STRESS_DIR"
	say "stress-ng ready: $(stress --version)"
}

run() {
	local runs=${1:-${STRESS_RUNS:-5}} cpus=${STRESS_CPU:-$(nproc)} i passed=0 t0 rc load
	build
	mkdir -p "$LOGS"
	say "$runs runs of make test, each beside stress-ng --cpu $cpus; logs in $LOGS/"
	for ((i = 1; i <= runs; i++)); do
		stress --cpu "$cpus" --timeout 0 >"$LOGS/stress-ng-$i.log" 2>&1 &
		load=$!
		t0=$SECONDS
		rc=0
		make --no-print-directory test >"$LOGS/run-$i.log" 2>&1 || rc=$?
		# stress-ng stops its workers on SIGTERM; the run after this one starts from no load.
		kill "$load" 2>/dev/null || true
		wait "$load" 2>/dev/null || true
		if ((rc == 0)); then
			passed=$((passed + 1))
			say "run $i/$runs: passed in $((SECONDS - t0))s ($(grep -o 'test result: ok. [0-9]* passed' "$LOGS/run-$i.log" | tail -n1))"
		else
			say "run $i/$runs: FAILED in $((SECONDS - t0))s; failures:"
			grep -E '^test .* FAILED$|^    [a-z_:]+$' "$LOGS/run-$i.log" | sed 's/^/[stress]   /' >&2 || true
		fi
	done
	echo "make test under stress-ng --cpu $cpus: $passed of $runs runs passed"
	((passed == runs))
}

case ${1:-help} in
build) build ;;
path) stress_bin ;;
run) run "${2:-}" ;;
help | -h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
