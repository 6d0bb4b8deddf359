# shellcheck shell=bash
# Shell helpers shared by hack/cluster.sh and hack/tools.sh: building Go binaries into the
# cache with progress. The sourcing script defines say and die (its own log prefix) first.

# Builds are reproducible and need no C toolchain; the machine's Go is used as it is.
go_env() { env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath "$@"; }

check_go() { # what-for
	command -v go >/dev/null || die "go is not installed (need Go >= 1.26 to build $1)"
	local gv
	gv=$(go_env go env GOVERSION)
	case $gv in
	go1.2[6-9]* | go1.[3-9][0-9]*) ;;
	*) die "need Go >= 1.26 to build $1 (found $gv); GOTOOLCHAIN=local is enforced" ;;
	esac
}

# Run a command with its output in a log file, printing a heartbeat every 30 s so a long
# build never sits silent. Shows the log tail on failure.
run_logged() { # label logfile command...
	local label=$1 log=$2 start=$SECONDS next pid rc=0
	shift 2
	"$@" >"$log" 2>&1 &
	pid=$!
	next=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if ((SECONDS >= next)); then
			say "  ... still building $label ($((SECONDS - start))s elapsed)"
			next=$((SECONDS + 30))
		fi
	done
	wait "$pid" || rc=$?
	if ((rc != 0)); then
		say "---- last lines of $log ----"
		tail -n 40 "$log" >&2
		die "building $label failed (exit $rc); full log: $log"
	fi
	say "  built $label in $((SECONDS - start))s"
}
