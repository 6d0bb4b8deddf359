# runbook-operator: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is what those two are made of.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CLUSTER ?= local
CLUSTER_NAME ?= demo
DEMO_NAMESPACE ?= demo
# The local stand-in for the demo's preview Services (kwok pods serve nothing), and the
# Services the operator resolves to it in `make run`.
DEMO_BACKEND ?= 127.0.0.1:18090
DEMO_PREVIEW_HOSTS ?= storefront-preview legalllm-unified-interface-preview legalllm-orchestrator-preview legalllm-agents-preview
CARGO ?= cargo
CLUSTER_SH := hack/cluster.sh
TOOLS_SH := hack/tools.sh
CHART := charts/runbook-operator
# The release `make test` installs; its ServiceAccount (same name) is the identity every
# operator process of the e2e suite acts as.
CHART_RELEASE := runbook-operator
CHART_NAMESPACE := runbook-system
# Where `make install` puts the kubectl plugin binary.
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
# Tests run against their own cluster (ports differ from the demo) so a running demo is
# never touched.
TEST_CLUSTER := test
# `make test-stress`: how many runs of `make test` under stress-ng.
STRESS_RUNS ?= 5

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the operator binary.
	$(CARGO) build --release --locked

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types, the chart's copy in charts/runbook-operator/crds/, and docs/reference.md.
	$(CARGO) run --quiet --locked -- crd --out-dir crds
	$(MAKE) --no-print-directory chart-crds docs

.PHONY: docs
docs: ## Regenerate docs/reference.md (the field reference) from the CRDs.
	$(CARGO) run --quiet --locked -- docs --out docs/reference.md

.PHONY: chart-crds
chart-crds:
	rm -f $(CHART)/crds/*.yaml
	cp crds/*.yaml $(CHART)/crds/

.PHONY: tools
tools: ## Build helm, kubeconform, promtool, Prometheus and Alertmanager from Go modules (first time only) into the cache.
	$(TOOLS_SH) build

.PHONY: chart
chart: chart-crds tools ## Sync the chart's CRDs from crds/, then helm lint --strict and helm template every ci/ profile.
	@eval "$$($(TOOLS_SH) env)"; \
	for values in $(CHART)/ci/*-values.yaml; do \
	  echo "[chart] $$values: lint"; \
	  helm lint --strict $(CHART) --namespace $(CHART_NAMESPACE) --values "$$values" >/dev/null \
	    || { helm lint --strict $(CHART) --namespace $(CHART_NAMESPACE) --values "$$values"; exit 1; }; \
	  echo "[chart] $$values: template ($$(helm template $(CHART_RELEASE) $(CHART) --namespace $(CHART_NAMESPACE) --values "$$values" | grep -c '^kind:') objects)"; \
	done

.PHONY: argocd
argocd: ## Test the Argo CD health and action scripts and regenerate deploy/argocd/argocd-cm.yaml.
	UPDATE_ARGOCD_SNIPPET=1 $(CARGO) test --locked --test argocd

.PHONY: argocd-real
argocd-real: ## Run every Argo CD script test case through a real argocd binary: ARGOCD_BIN=/path/to/argocd make argocd-real.
	CARGO="$(CARGO)" hack/argocd-real.sh

.PHONY: cluster
cluster: ## Build (first time only) and start the local demo cluster.
	$(CLUSTER_SH) build
	$(CLUSTER_SH) up $(CLUSTER_NAME) > .cluster-env

.PHONY: run
run: build ## Start a local cluster (or CLUSTER=current), install CRDs and examples, Prometheus and Alertmanager, run the operator.
	$(TOOLS_SH) build
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
	echo "[run] starting Prometheus and Alertmanager (hack/monitoring.sh)"; \
	hack/monitoring.sh up $(CLUSTER_NAME) > .monitoring-env; \
	source .monitoring-env; \
	echo "  Prometheus:   $$PROMETHEUS_URL/alerts (scrapes the operator; the example incident rules)"; \
	echo "  Alertmanager: $$ALERTMANAGER_URL/api/v2/alerts (routes every alert to the operator)"; \
	echo "  fire the seed 000 alert by hand (Alertmanager sends it to the operator, which starts"; \
	echo "  incident-high-error-rate in $(DEMO_NAMESPACE)):"; \
	echo "  curl -XPOST -H 'Content-Type: application/json' $$ALERTMANAGER_URL/api/v2/alerts -d '[{\"labels\":{\"alertname\":\"HighErrorRate\",\"service\":\"app\",\"namespace\":\"$(DEMO_NAMESPACE)\",\"severity\":\"critical\"}}]'"; \
	echo "  kubectl get rbr -n $(DEMO_NAMESPACE)"; \
	echo; \
	echo "[run] the cluster's pods are simulated, so a stand-in answers the preview Services' /health"; \
	echo "  (runbook-operator demo-backend on $(DEMO_BACKEND), log .demo-backend.log; the operator"; \
	echo "  resolves $(DEMO_PREVIEW_HOSTS) to it with --resolve)"; \
	echo "  release a new storefront image and watch it validate and switch:"; \
	echo "  kubectl patch bgr -n $(DEMO_NAMESPACE) storefront --type=json -p '[{\"op\":\"replace\",\"path\":\"/spec/template/spec/containers/0/image\",\"value\":\"registry.example.com/shop/storefront:2.1.0\"}]'"; \
	echo "  and the LegalLLM stack (seed 002: three components, validated and switched together):"; \
	echo "  kubectl patch bgr -n $(DEMO_NAMESPACE) legalllm --type=json -p '[{\"op\":\"replace\",\"path\":\"/spec/components/0/template/spec/containers/0/image\",\"value\":\"registry.example.com/legalllm/unified-interface:3.3.0\"}]'"; \
	echo "  kubectl get bgr -n $(DEMO_NAMESPACE) -o wide -w"; \
	target/release/runbook-operator demo-backend --address $(DEMO_BACKEND) > .demo-backend.log 2>&1 & \
	backend=$$!; trap 'kill $$backend 2>/dev/null' EXIT; \
	resolve=$$(for h in $(DEMO_PREVIEW_HOSTS); do printf '%s=%s,' "$$h.$(DEMO_NAMESPACE).svc" "$(DEMO_BACKEND)"; done); \
	echo "Running the operator (Ctrl-C stops it; 'make down' stops the cluster, Prometheus and Alertmanager)."; \
	echo "(--allow-loopback-egress: the demo's http steps may call servers on this machine)"; \
	target/release/runbook-operator run --allow-loopback-egress --resolve "$${resolve%,}" \
	  --alerts-addr "$$ALERTS_ADDR" --alerts-token-file "$$ALERTS_TOKEN_FILE"

.PHONY: down
down: ## Stop the local demo cluster and its Prometheus and Alertmanager.
	hack/monitoring.sh down $(CLUSTER_NAME)
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
unit: ## Unit tests, the CRD and reference drift checks, the layout checks and the Argo CD script tests (no cluster needed).
	$(CARGO) test --locked --lib --test crds --test argocd --test layout

.PHONY: test
test: ## Lint, unit tests, then the chart (installed with helm) and integration tests against a local cluster started for the run.
	$(CARGO) build --locked --all-targets
	$(MAKE) --no-print-directory lint unit
	$(CLUSTER_SH) build
	$(TOOLS_SH) build
	hack/browser.sh install
	@trap '$(CLUSTER_SH) down $(TEST_CLUSTER) || true' EXIT; \
	$(CLUSTER_SH) up $(TEST_CLUSTER) > .cluster-test-env; \
	source .cluster-test-env; \
	eval "$$($(TOOLS_SH) env)"; \
	eval "$$(hack/browser.sh env)"; \
	kubectl apply --server-side --force-conflicts -f crds/ >/dev/null; \
	kubectl wait --for=condition=Established --timeout=60s $$(ls crds | sed 's/\.yaml$$//' | sed 's/^/crd\//') >/dev/null; \
	echo "[test] helm install $(CHART_RELEASE) $(CHART) into namespace $(CHART_NAMESPACE)"; \
	helm install $(CHART_RELEASE) $(CHART) -n $(CHART_NAMESPACE) --create-namespace --wait --timeout 2m >/dev/null; \
	export E2E_OPERATOR_SERVICE_ACCOUNT=system:serviceaccount:$(CHART_NAMESPACE):$(CHART_RELEASE); \
	export E2E_OPERATOR_KUBECONFIG=$$PWD/.cluster/$(TEST_CLUSTER)/operator.kubeconfig; \
	hack/operator-kubeconfig.sh $(CHART_NAMESPACE) $(CHART_RELEASE) $$E2E_OPERATOR_KUBECONFIG 4h; \
	echo "[test] every e2e operator authenticates as $$E2E_OPERATOR_SERVICE_ACCOUNT (a token; the chart's RBAC, its impersonation checked too)"; \
	echo "[test] the incident tests start their own Prometheus ($$PROMETHEUS) and Alertmanager ($$ALERTMANAGER)"; \
	$(CARGO) test --locked --test e2e -- --include-ignored --test-threads=4 || { \
	  echo "[test] integration tests failed; cluster logs:"; \
	  for f in .cluster/$(TEST_CLUSTER)/logs/*.log; do echo "== $$f"; tail -n 20 "$$f"; done; exit 1; }

.PHONY: test-stress
test-stress: ## `make test` STRESS_RUNS times (default 5), each beside stress-ng on every CPU; prints the tally.
	hack/stress.sh run $(STRESS_RUNS)

.PHONY: bench
bench: build ## Benchmarks against a local cluster; prints figures.
	hack/bench.sh
	hack/bench-runs.sh
	hack/bench-windows.sh
	hack/bench-releases.sh
	hack/bench-backups.sh
	hack/bench-failover.sh
	hack/bench-outbound.sh
	hack/bench-alerts.sh
	hack/tools.sh build
	hack/bench-scale.sh
	hack/bench-decisions.sh
	hack/bench-dashboard.sh

.PHONY: bench-releases
bench-releases: build ## BlueGreenReleases: floor, 1/100/1,000 at once, RSS slope; beside Argo Rollouts with ARGO_ROLLOUTS_BIN=path.
	hack/bench-releases.sh

.PHONY: bench-failover
bench-failover: build ## Leader failover benchmark: SIGKILL the leader -> first write by the new leader.
	hack/bench-failover.sh

.PHONY: bench-outbound
bench-outbound: build ## 100 runs on a blackholed URL in one namespace vs an unrelated run's latency in another.
	hack/bench-outbound.sh

.PHONY: bench-alerts
bench-alerts: build ## Alert storm: 1,000 webhook POSTs (100 firings x 10) -> runs vs expected, latencies, RSS/CPU, writes.
	hack/bench-alerts.sh

.PHONY: bench-scale
bench-scale: build ## Operator RSS and CPU with the examples plus 1,000 objects of each kind, under the chart's RBAC.
	hack/tools.sh build
	hack/bench-scale.sh

.PHONY: bench-decisions
bench-decisions: build ## Deciding runbooks: typed params, outputs, when, query steps vs Argo Rollouts' AnalysisRun; medians over 3 rounds.
	hack/bench-decisions.sh

.PHONY: bench-dashboard
bench-dashboard: build ## Dashboard in headless Chromium: page load times with 1,000 runs and 200 windows, plugin RSS, API requests per view.
	hack/bench-dashboard.sh
