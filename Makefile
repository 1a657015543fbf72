# The public make targets (DESIGN.md): up, down, test, bench, install, proto.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export NIMBUS_HOME ?= $(CURDIR)/.nimbus

.PHONY: up down test bench install proto runc unit integration

install:
	@scripts/install.sh
	@$(MAKE) --no-print-directory proto

# Regenerates only when a .proto changed since the last run.
proto: libs/gen/nimbus.pb
libs/gen/nimbus.pb: $(shell find proto -name '*.proto') scripts/gen_proto.sh
	@test -x $(PY) || scripts/install.sh
	@PYTHON=$(PY) scripts/gen_proto.sh

up: install
	@$(PY) -m nimbus.cluster up

down:
	@test -x $(PY) && $(PY) -m nimbus.cluster down || echo "down: nothing installed, nothing running"

test: install
	@$(PY) -m pytest $(PYTEST_ARGS)

unit: install
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	@$(PY) -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

bench: install
	@$(PY) -m bench.run
