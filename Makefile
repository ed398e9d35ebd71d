# flowable-worker-operator: every entry point a developer or CI needs.
# `make test` is the one command CI runs (through .ci/run): it installs what it needs by itself.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Built artefacts (Flowable test server jar, control-plane binaries) live outside the repo, keyed by
# version, so a fresh clone on the same machine reuses them.
FWO_CACHE ?= $(HOME)/.cache/flowable-worker-operator
export FWO_CACHE
PYTEST := $(BIN)/python -m pytest
# How many fault kinds `make test-faults` must exercise (docs/reliability.md lists them).
FAULT_KINDS_MIN ?= 20

.PHONY: help setup lint test test-unit test-packaging test-contract test-real flowable-server prereqs-java run-worker demo

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## venv in .venv with an editable install and the operator and dev extras

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[operator,dev]'
	touch $@

lint: setup actionlint-bin ## ruff; mypy --strict over both packages and the test harness; hadolint on the Dockerfile; actionlint on the workflows; import directions (docs/architecture.md)
	$(BIN)/ruff check worker operator tests localstack bench examples
	$(BIN)/mypy --strict worker/flowable_worker operator/flowable_worker_operator
	$(BIN)/mypy --strict localstack/*.py tests/support
	$(BIN)/hadolint Dockerfile examples/handler-image/Dockerfile
	"$$(bash localstack/actionlint/build.sh --bin-dir)/actionlint" -no-color
	$(BIN)/python -m localstack.importcheck

prereqs-java:
	@command -v java >/dev/null || { echo "error: java not found: install a Java 17 JDK (the real Flowable test server needs it)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn not found: install Apache Maven 3.8+ (it builds the real Flowable test server)" >&2; exit 1; }

flowable-server: prereqs-java ## build (or reuse) the real Flowable 7.2 test server jar
	@bash localstack/flowable-server/build.sh

test-unit: setup ## fast tests: no external parts (and the examples' own handler tests)
	$(PYTEST) tests/unit examples -q

test-contract: setup flowable-server ## one API contract, run against real Flowable and the emulator
	$(PYTEST) tests/contract -q

test-real: setup flowable-server ## smoke tests of the real Flowable test server itself
	$(PYTEST) tests/real -q

test-packaging: setup ## the worker image's pip install (no operator extra) in a fresh venv
	$(PYTEST) tests/packaging -q

test: setup lint test-unit test-packaging test-contract test-real test-worker test-cluster test-e2e test-faults test-alerts test-images ## everything CI runs
	@echo "make test: all suites passed"

run-worker: setup ## one worker against a Flowable you run (FLOWABLE_URL, FLOWABLE_TOPIC, FLOWABLE_WORKER_HANDLER)
	$(BIN)/flowable-worker

# Local Kubernetes control plane (issue 4): real binaries built from Go modules, cached in $(FWO_CACHE)/k8s.
.PHONY: cluster-bin test-cluster

cluster-bin: ## build (or reuse) kube-apiserver, controller-manager, scheduler, etcd, kwok; fetch kubectl, helm
	@bash localstack/k8s/build.sh

test-cluster: setup cluster-bin ## tests against the real local control plane (tests/cluster)
	$(PYTEST) tests/cluster -q -m "not fault"

.PHONY: demo
demo: setup flowable-server cluster-bin ## main job: Flowable + local cluster + operator + workers, a backlog scaled live
	$(BIN)/python -m localstack.demo $(DEMO_ARGS)

.PHONY: test-e2e
test-e2e: setup flowable-server cluster-bin ## the operator end to end: local cluster + real Flowable + worker processes
	$(PYTEST) tests/e2e -q -m "not fault and not keda"

.PHONY: test-worker bench-worker
test-worker: setup flowable-server ## the worker runtime against real Flowable and the emulator (fault tests: test-faults)
	$(PYTEST) tests/worker -q -m "not fault"

# Every test marked @pytest.mark.fault, wherever it lives; the run ends with the line
# "faults injected: N, survived: N, jobs lost: 0, duplicates: 0" (tests/support/fault_ledger.py).
.PHONY: test-faults
test-faults: setup flowable-server cluster-bin ## injected faults (engine, network, workers, handlers, cluster), judged by Flowable's history
	$(PYTEST) tests/worker tests/cluster tests/e2e -q -m fault --faults-min-kinds=$(FAULT_KINDS_MIN)

bench-worker: setup flowable-server ## worker throughput vs the official client and the server's ceiling (docs/benchmarks.md)
	$(BIN)/python -m pip install -q -e '.[operator,dev,bench]'
	$(BIN)/python bench/worker_throughput.py

# The alert rules under Prometheus's own rule engine (promtool, built from its Go module, cached in $(FWO_CACHE)/prometheus).
.PHONY: promtool-bin test-alerts
promtool-bin: ## build (or reuse) Prometheus's promtool
	@bash localstack/prometheus/build.sh

test-alerts: setup promtool-bin ## the alert and recording rules under promtool, and promtool's lint of both components' metrics
	$(PYTEST) tests/alerts -q

# Images (issue 8): podman with runc, on a base made from Debian's packages (no registry is
# reachable), cached in $(FWO_CACHE)/images; podman's configuration is localstack/images/*.conf.
.PHONY: podman images test-images
podman: ## install (apt-get, when missing) and check podman, runc and debootstrap
	@bash localstack/images/podman.sh

images: ## build the worker and operator images with podman, tagged with the project's version
	@bash localstack/images/build.sh

test-images: setup flowable-server cluster-bin images ## the images for real: CLIs, and worker pods as containers of the handler image
	$(PYTEST) tests/images -q

# Releases (.github/workflows/release.yml, which only GitHub can run): actionlint checks it in
# `make lint`, built from its Go module and cached in $(FWO_CACHE)/actionlint.
.PHONY: actionlint-bin version
actionlint-bin: ## build (or reuse) actionlint, the release workflow's linter
	@bash localstack/actionlint/build.sh

version: ## print the project's one version (worker/flowable_worker/_version.py): image tags, release tag
	@sed -n 's/^__version__ = "\(.*\)"$$/\1/p' worker/flowable_worker/_version.py

# The real KEDA (operator + metrics adapter) built from its Go module, cached in $(FWO_CACHE)/keda.
# Opt-in: for the side-by-side benchmark against KEDA; `make test` does not build it.
.PHONY: keda-bin
keda-bin: ## build (or reuse) KEDA's operator and metrics adapter from their Go module (opt-in)
	@bash localstack/keda/build.sh

# The real KEDA side by side with this operator (issue 12): opt-in, it needs `make keda-bin`.
.PHONY: test-keda bench-keda
test-keda: setup flowable-server cluster-bin keda-bin ## the KEDA harness itself: KEDA scales a pool 0 -> N -> 0 on the real metrics API
	$(PYTEST) tests/e2e -q -m keda

bench-keda: setup flowable-server cluster-bin keda-bin ## this operator and KEDA + HPA on the same cluster, engine, workers and traces (docs/benchmarks.md)
	$(BIN)/python bench/vs_keda.py $(BENCH_ARGS)

# The operator at scale (issue 11): pools in stages, CPU, RSS, ticks, API-server and engine requests, lag.
.PHONY: bench-operator
bench-operator: setup flowable-server cluster-bin ## the operator with 100, 1000 and 10,000 pools (docs/benchmarks.md)
	$(BIN)/python bench/operator_scale.py $(BENCH_ARGS)
