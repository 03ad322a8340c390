# One-command entry points. Each target sets up what it needs (virtualenv, npm packages) itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup test lint demo bench package release template template-check clean

help:
	@echo "make demo     run the connector end to end on the local sandbox"
	@echo "make test     run the test suite"
	@echo "make bench    run the benchmark"
	@echo "make lint     ruff (lint and format) + mypy + actionlint"
	@echo "make package  build the function zip and its sha256"
	@echo "make release REPO=<owner>/<name> TAG=v<x.y.z>  the release assets in dist/release/<tag>/"
	@echo "make template regenerate the deploy/ templates and portal form from schema.py and content/"

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %d.%d); set PYTHON=python3.11" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 20 (with npm) and retry"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error || { echo "npm could not install the pinned packages (is the npm registry reachable?)"; exit 1; }
	@touch node_modules/.installed

setup: $(STAMP) node_modules/.installed

test: setup chromium
	$(PY) -m pytest -q

# `make demo SETTINGS=local.settings.json` runs one tick against the real services in that file;
# DEMO_ARGS passes anything else (e.g. DEMO_ARGS=--fresh).
demo: setup
	$(PY) -m sandbox.demo $(if $(SETTINGS),--settings $(SETTINGS)) $(DEMO_ARGS)

# Headless Chromium for the HTML report test (installed when root, else the test skips).
chromium:
	@scripts/ensure-chromium.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/actionlint

# BENCH_ARGS passes options through, e.g. make bench BENCH_ARGS=--quick
bench: setup
	$(PY) -m bench.run $(BENCH_ARGS)

package: $(STAMP)
	$(PY) -m deploy.package $(PACKAGE_ARGS)

# The assets of one GitHub release (zip + sha256, stamped template, portal form, notes); the release
# workflow runs exactly this. RELEASE_ARGS passes anything else (e.g. RELEASE_ARGS="--out DIR").
release: $(STAMP)
	@$(PY) -m deploy.release --repo "$(REPO)" --tag "$(TAG)" $(RELEASE_ARGS)

template: $(STAMP)
	$(PY) -m deploy.build_template

template-check: $(STAMP)
	$(PY) -m deploy.build_template --check

clean:
	rm -rf $(VENV) node_modules .sandbox dist
