# runbook-operator: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is what those two are made of.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CLUSTER ?= local
CLUSTER_NAME ?= demo
DEMO_NAMESPACE ?= demo
CARGO ?= cargo
CLUSTER_SH := hack/cluster.sh
# Where `make install` puts the kubectl plugin binary.
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
# Tests run against their own cluster (ports differ from the demo) so a running demo is
# never touched.
TEST_CLUSTER := test

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the operator binary.
	$(CARGO) build --release --locked

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types.
	$(CARGO) run --quiet --locked -- crd --out-dir crds

.PHONY: argocd
argocd: ## Test the Argo CD health and action scripts and regenerate deploy/argocd/argocd-cm.yaml.
	UPDATE_ARGOCD_SNIPPET=1 $(CARGO) test --locked --test argocd

.PHONY: cluster
cluster: ## Build (first time only) and start the local demo cluster.
	$(CLUSTER_SH) build
	$(CLUSTER_SH) up $(CLUSTER_NAME) > .cluster-env

.PHONY: run
run: build ## Start a local cluster (or CLUSTER=current), install CRDs and examples, run the operator.
	@if [ "$(CLUSTER)" = current ]; then \
	  echo "[run] using the cluster of the current kubeconfig"; \
	  kubectl version >/dev/null || { echo "[run] ERROR: no cluster reachable with the current kubeconfig"; exit 1; }; \
	  : > .cluster-env; \
	else \
	  $(CLUSTER_SH) build; \
	  $(CLUSTER_SH) up $(CLUSTER_NAME) > .cluster-env; \
	fi
	@source .cluster-env; \
	echo "[run] installing CRDs"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s $$(ls crds | sed 's/\.yaml$$//' | sed 's/^/crd\//') >/dev/null; \
	kubectl create namespace $(DEMO_NAMESPACE) --dry-run=client -o yaml | kubectl apply -f - >/dev/null; \
	echo "[run] applying examples/ into namespace $(DEMO_NAMESPACE)"; \
	kubectl apply -n $(DEMO_NAMESPACE) -f examples/ | sed 's/^/[run]   /'; \
	echo; \
	echo "In another terminal:"; \
	sed -n 's/^export /  export /p' .cluster-env; \
	echo "  kubectl get ops -A"; \
	echo "  kubectl get maintenancewindows -A"; \
	echo "  kubectl get backuppolicies -n $(DEMO_NAMESPACE)"; \
	echo "  kubectl annotate bp -n $(DEMO_NAMESPACE) postgres-daily ops.runbook.dev/backup-now=\$$(date +%s) --overwrite"; \
	echo "  kubectl describe runbook -n $(DEMO_NAMESPACE) daily-health-check"; \
	echo; \
	echo "Running the operator (Ctrl-C stops it; 'make down' stops the cluster)."; \
	exec target/release/runbook-operator run

.PHONY: down
down: ## Stop the local demo cluster.
	$(CLUSTER_SH) down $(CLUSTER_NAME)

.PHONY: install
install: install-plugin ## Install the CRDs into the cluster of the current kubeconfig, and the kubectl plugin.
	kubectl apply --server-side --force-conflicts -f crds/

.PHONY: install-plugin
install-plugin: ## Install the kubectl plugin (`kubectl runbook`) into ~/.local/bin (BINDIR=... to change).
	$(CARGO) build --release --locked --bin kubectl-runbook
	install -d "$(BINDIR)"
	install -m 0755 "$${CARGO_TARGET_DIR:-target}/release/kubectl-runbook" "$(BINDIR)/kubectl-runbook"
	@echo "[install] $(BINDIR)/kubectl-runbook installed; try: kubectl runbook --help"; \
	case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "[install] $(BINDIR) is not on PATH: add it so kubectl finds the plugin";; esac

.PHONY: lint
lint: ## Formatting and clippy.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

.PHONY: unit
unit: ## Unit tests, the CRD drift check and the Argo CD script tests (no cluster needed).
	$(CARGO) test --locked --lib --test crds --test argocd

.PHONY: test
test: ## Lint, unit tests, then integration tests against a local cluster started for the run.
	$(CARGO) build --locked --all-targets
	$(MAKE) --no-print-directory lint unit
	$(CLUSTER_SH) build
	@trap '$(CLUSTER_SH) down $(TEST_CLUSTER) || true' EXIT; \
	$(CLUSTER_SH) up $(TEST_CLUSTER) > .cluster-test-env; \
	source .cluster-test-env; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s $$(ls crds | sed 's/\.yaml$$//' | sed 's/^/crd\//') >/dev/null; \
	$(CARGO) test --locked --test e2e -- --include-ignored --test-threads=4 || { \
	  echo "[test] integration tests failed; cluster logs:"; \
	  for f in .cluster/$(TEST_CLUSTER)/logs/*.log; do echo "== $$f"; tail -n 20 "$$f"; done; exit 1; }

.PHONY: bench
bench: build ## Benchmarks against a local cluster; prints figures.
	hack/bench.sh
	hack/bench-runs.sh
	hack/bench-windows.sh
	hack/bench-releases.sh
	hack/bench-backups.sh
