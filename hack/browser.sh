#!/usr/bin/env bash
# The headless browser of the dashboard's e2e tests (tests/e2e/dashboard.rs): Chromium and
# its WebDriver server, chromedriver, from the OS packages (Debian `chromium` and
# `chromium-driver`), installed by `make test` when missing. Run `hack/browser.sh help`.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: hack/browser.sh COMMAND

  install  install Debian's chromium and chromium-driver with apt-get when the browser or
           the driver is missing (a no-op when both are there); prints their versions
  env      print an eval-able line: export CHROMIUM=<browser> CHROMEDRIVER=<driver>
  help     this text

Environment:
  CHROMIUM_BIN      the browser (default /usr/bin/chromium)
  CHROMEDRIVER_BIN  the driver (default /usr/bin/chromedriver)
  APT_GET           the package tool (default apt-get)
EOF
}

CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
CHROMEDRIVER_BIN=${CHROMEDRIVER_BIN:-/usr/bin/chromedriver}
APT_GET=${APT_GET:-apt-get}
PACKAGES=(chromium chromium-driver)

say() { printf '[browser] %s\n' "$*" >&2; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

by_hand() {
	printf 'install Chromium and a chromedriver of the same major version by hand (Debian/Ubuntu: %s; Fedora: chromium chromedriver; macOS: brew install --cask chromium chromedriver) and point CHROMIUM_BIN and CHROMEDRIVER_BIN at them' \
		"apt-get install chromium chromium-driver"
}

missing() {
	[[ -x $CHROMIUM_BIN && -x $CHROMEDRIVER_BIN ]] && return 1
	return 0
}

# Root runs apt-get itself; anyone else needs sudo.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "installing ${PACKAGES[*]} needs root and there is no sudo: run as root, or $(by_hand)"
	fi
}

apt_install() {
	as_root env DEBIAN_FRONTEND=noninteractive "$APT_GET" install -y -q --no-install-recommends "${PACKAGES[@]}"
}

cmd_install() {
	if missing; then
		command -v "$APT_GET" >/dev/null ||
			die "$CHROMIUM_BIN or $CHROMEDRIVER_BIN is missing and there is no $APT_GET (not a Debian machine?): $(by_hand)"
		say "$CHROMIUM_BIN or $CHROMEDRIVER_BIN missing: $APT_GET install ${PACKAGES[*]}"
		local log
		log=$(mktemp)
		if ! apt_install >"$log" 2>&1; then
			# A fresh machine (or container) has no package lists yet: fetch them, once.
			if grep -qE 'Unable to locate package|has no installation candidate' "$log"; then
				say "no package lists for ${PACKAGES[*]}: $APT_GET update, then install again"
				as_root "$APT_GET" update -q >&2 || { rm -f "$log"; die "$APT_GET update failed: $(by_hand)"; }
				apt_install >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "$APT_GET install ${PACKAGES[*]} failed (above): $(by_hand)"; }
			else
				cat "$log" >&2
				rm -f "$log"
				die "$APT_GET install ${PACKAGES[*]} failed (above): $(by_hand)"
			fi
		fi
		rm -f "$log"
		missing && die "$APT_GET installed ${PACKAGES[*]} but $CHROMIUM_BIN or $CHROMEDRIVER_BIN is still missing: set CHROMIUM_BIN and CHROMEDRIVER_BIN to where they are, or $(by_hand)"
	fi
	# Debian's chromium launcher script may complain on stderr; the version is on stdout.
	local browser driver
	browser=$("$CHROMIUM_BIN" --version 2>/dev/null | awk '{print $2}')
	driver=$("$CHROMEDRIVER_BIN" --version 2>/dev/null | awk '{print $2}')
	[[ -n $browser && -n $driver ]] || die "$CHROMIUM_BIN --version or $CHROMEDRIVER_BIN --version printed no version: is it broken?"
	[[ ${browser%%.*} == "${driver%%.*}" ]] ||
		say "warning: chromium $browser and chromedriver $driver are different major versions; the driver may refuse the browser"
	printf '[browser] chromium %s, chromedriver %s\n' "$browser" "$driver"
}

cmd_env() {
	missing && die "$CHROMIUM_BIN or $CHROMEDRIVER_BIN is missing: run hack/browser.sh install"
	printf 'export CHROMIUM=%q CHROMEDRIVER=%q\n' "$CHROMIUM_BIN" "$CHROMEDRIVER_BIN"
}

main() {
	local cmd=${1:-help}
	case $cmd in
	install) cmd_install ;;
	env) cmd_env ;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		die "unknown command '$cmd'"
		;;
	esac
}

main "$@"
