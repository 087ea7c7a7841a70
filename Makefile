# The two commands a newcomer needs: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
QA := $(VENV)/bin/qa
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast index eval bench load lint typecheck browser-deps image manifests clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: $(STAMP)  ## create .venv and install everything (idempotent)

# Re-runs only when pyproject.toml changes. torch goes first and pinned: this CPU build is on
# the machine's disk; an unpinned torch would pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

index: install  ## build the index if it is missing or stale
	$(QA) build

run: index  ## install, build the index if needed, start the server on http://127.0.0.1:8000
	$(QA) serve

test: install  ## the whole test suite (browser tests skip when /usr/bin/chromium is absent)
	$(PY) -m pytest

test-fast: install  ## unit tests only (fake encoder), a few seconds
	$(PY) -m pytest -m "not integration and not browser"

eval: install  ## quality on data/eval, the blind data/holdout and the real questions of data/real
	$(QA) eval
	$(QA) eval data/holdout
	$(QA) eval data/real

bench: install  ## latency, throughput, memory, build time
	$(PY) scripts/bench.py

load: install  ## 60 s load test on loopback (50 clients)
	$(PY) scripts/load.py --seconds 60 --clients 50 --check-bars

lint: install  ## ruff
	$(VENV)/bin/ruff check qa server tests scripts

typecheck: install  ## mypy on qa/ and server/
	$(VENV)/bin/mypy

image:  ## build the container image (needs a Docker engine; deploy/README.md)
	docker build -t kruise-faq-bot:$$($(PY) -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])') .

manifests:  ## render the Kubernetes overlays (deploy/kustomize) with kubectl kustomize
	kubectl kustomize deploy/kustomize/overlays/single
	@echo ---
	kubectl kustomize deploy/kustomize/overlays/ha

browser-deps:  ## Debian's Chromium for the browser tests (needs root)
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

clean:  ## remove the built index and caches (not .venv)
	rm -rf index/*.json index/*.faiss .pytest_cache artifacts
