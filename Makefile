# FrostGate Forge — the two commands a fresh machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make-stamps
## python: the runbook's verify command (`python scripts/verify_verdict.py`); Debian has only python3.
SYSTEM_TOOLS := python:python-is-python3 bwrap:bubblewrap nft:nftables ip:iproute2 setpriv:util-linux nsenter:util-linux pkill:procps chromium:chromium mmdebstrap:mmdebstrap ssh:openssh-client
## Packages probed by a file glob (tools not on PATH): the tests start a throwaway PostgreSQL.
SYSTEM_FILES := /usr/lib/postgresql/*/bin/initdb:postgresql
PYTEST_ARGS ?=
## Wheels of every dependency, so tests build fresh venvs without reaching a package index.
WHEELHOUSE := build/wheelhouse

.PHONY: test demo lint typecheck pytest images system-deps venv wheelhouse bytecode bench clean web-vendor

test: system-deps venv lint typecheck pytest

## System packages the sandbox runtime needs (installed with apt when missing).
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	for pair in $(SYSTEM_FILES); do glob=$${pair%%:*}; pkg=$${pair##*:}; \
	  compgen -G "$$glob" >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: need root to install:$$missing" >&2; exit 1; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## One pip call for both distributions: the platform's pinned frostgate-forge-verify is the
## local ./verifier, so pip never looks for it on a package index.
$(STAMPS)/venv: pyproject.toml verifier/pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ./verifier -e '.[test]'
	@touch $@

venv: $(STAMPS)/venv

## The dependencies of both distributions; their own wheels are dropped (tests build them).
$(STAMPS)/wheelhouse: pyproject.toml verifier/pyproject.toml $(STAMPS)/venv
	@mkdir -p $(WHEELHOUSE)
	$(BIN)/python -m pip wheel -q --disable-pip-version-check -w $(WHEELHOUSE) ./verifier '.'
	@rm -f $(WHEELHOUSE)/frostgate_*.whl
	@touch $@

wheelhouse: $(STAMPS)/wheelhouse

## Compiled modules of the editable install, written now even where PYTHONDONTWRITEBYTECODE
## is set: else every `forge` process (each service, each command; the tests start
## thousands) compiles the sources it imports again, ~0.25 s of CPU per service start.
bytecode: venv
	@$(BIN)/python -m compileall -q -j 0 src verifier/src

lint: venv
	$(BIN)/ruff check $(wildcard src tests bench scripts verifier)

typecheck: venv
	$(BIN)/mypy src verifier/src

## The images the shipped labs run on (cached machine-wide after the first build).
images: venv
	@echo "lab images the templates need: built on first use (about a minute each here), cached after"
	@start=$$(date +%s); $(BIN)/forge image build --templates && \
	  echo "images ready in $$(( $$(date +%s) - start )) s (cached: the next run skips this)"

## Four workers on two cores: the suite spends much of its time waiting on services, not on
## the CPU (measured: 23 min of pytest on three workers using 1.1 cores on average, 32-37 min
## on two).
PYTEST_WORKERS ?= 4
## Tests that change the machine's accounts or /etc files (useradd, a rename of /etc/passwd
## as useradd does) run alone, after the others, so none of them races another's change of
## the same file. Exit 5: PYTEST_ARGS chose none of them.
pytest: venv wheelhouse images bytecode
	$(BIN)/pytest -n $(PYTEST_WORKERS) -m "not machine_accounts" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -m machine_accounts $(PYTEST_ARGS) || [ $$? -eq 5 ]

## Options for `forge demo`, e.g. where the default ports are taken:
## make demo DEMO_ARGS="--spawn-port 9082 --orchestrator-port 9083 --scoreboard-port 9086"
DEMO_ARGS ?=
demo: system-deps venv images bytecode
	$(BIN)/forge demo $(DEMO_ARGS)

## Every bench script, then one table of issue 19's figures (bench/_table.py).
bench: system-deps venv images bytecode
	@rm -f build/bench/results.jsonl
	@for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
	@echo "== figures (before: issue 19; now: this run)"; $(BIN)/python bench/_table.py

## Re-fetch the browser terminal (xterm.js, pinned) from npm; fails if it differs from SHA256SUMS.
web-vendor:
	@command -v npm >/dev/null 2>&1 || { echo "web-vendor needs npm (apt-get install npm)" >&2; exit 1; }
	scripts/vendor_web.sh

clean:
	rm -rf $(VENV) $(STAMPS) .mypy_cache .ruff_cache .pytest_cache
