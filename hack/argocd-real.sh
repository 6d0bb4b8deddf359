#!/usr/bin/env bash
# `make argocd-real`: runs every case of deploy/argocd/ops.runbook.dev/*/health_test.yaml and
# */actions/action_test.yaml through a real Argo CD CLI (`argocd admin settings
# resource-overrides health|list-actions|run-action --argocd-cm-path deploy/argocd/argocd-cm.yaml`),
# compares with the expected results, prints a tally and exits non-zero on a mismatch.
# Not part of `make test`: Argo CD cannot be built from the Go module proxy alone on every
# machine. ARGOCD_BIN names the binary (see "Checking against a real Argo CD" in the README).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${ARGOCD_BIN:-}" ]; then
  echo "[argocd-real] ERROR: set ARGOCD_BIN to an argocd binary, e.g. ARGOCD_BIN=\$HOME/bin/argocd make argocd-real" >&2
  exit 2
fi
if [ ! -x "$ARGOCD_BIN" ]; then
  echo "[argocd-real] ERROR: ARGOCD_BIN=$ARGOCD_BIN is not an executable file" >&2
  exit 2
fi
ARGOCD_BIN=$(realpath "$ARGOCD_BIN")
export ARGOCD_BIN
echo "[argocd-real] $("$ARGOCD_BIN" version --client --short 2>/dev/null | head -n 1 || echo "version unknown")"
exec "${CARGO:-cargo}" test --locked --test argocd -- --ignored --exact real::argocd_real --nocapture
