# runwhen-operator. The two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CACHE ?= $(HOME)/.cache/runwhen-operator

.PHONY: help venv controlplane helm testenv-up testenv-down test test-fast lint format crds crds-check demo bench clean

help:
	@echo "make demo          run the operator against the emulator on a local control plane, then tear down"
	@echo "make test          the whole test suite (lint, unit, integration against a real kube-apiserver)"
	@echo "make testenv-up    start etcd + kube-apiserver, write .testenv/kubeconfig"
	@echo "make testenv-down  stop them and remove their data"
	@echo "make lint          ruff, mypy (strict), import-linter"
	@echo "make crds          regenerate crds/ and the chart's CRDs from the models"
	@echo "make bench         benchmarks; results go to docs/benchmarks.md"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

controlplane:
	hack/build-controlplane.sh all

health-check:
	hack/build-health-check.sh

helm: venv
	$(PY) hack/testenv.py helm

testenv-up: venv controlplane
	$(PY) hack/testenv.py up

testenv-down: venv
	$(PY) hack/testenv.py down

lint: venv
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: venv
	$(VENV)/bin/ruff check --fix operator tests bench hack
	$(VENV)/bin/ruff format operator tests bench hack

crds: venv
	$(VENV)/bin/runwhen-operator crds --write
	$(PY) hack/sync-deploy-crds.py

test: venv controlplane helm health-check lint
	$(PY) -m pytest -q -ra

test-fast: venv
	$(PY) -m pytest -q -ra tests/unit

demo: venv controlplane
	$(PY) hack/demo.py

bench: venv controlplane
	$(PY) -m bench

clean:
	-$(PY) hack/testenv.py down
	rm -rf $(VENV) .testenv
