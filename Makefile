# tffreeze build. `make demo` and `make test` are the two commands that matter;
# both set everything up first (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tffreeze-setup
PROTOS := $(wildcard protos/tffreeze/v1/*.proto)
GEN    := client_py/tffreeze/v1
STUBS  := $(patsubst protos/%.proto,client_py/%_pb2.py,$(PROTOS))
HOST   ?= 127.0.0.1
PORT   ?= 50051
DATA   ?= .tffreeze-data

.PHONY: setup gen serve demo test test-unit bench bench-breadth clean

setup: $(STAMP) $(STUBS)

# Installs the pinned dependencies and both packages (editable) into .venv/.
$(STAMP): requirements.txt client_py/pyproject.toml server/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e client_py -e server
	touch $@

# Python stubs are generated from protos/ by the build, never edited by hand.
gen: $(STUBS)
$(STUBS) &: $(PROTOS) $(STAMP)
	mkdir -p $(GEN)
	$(BIN)/python -m grpc_tools.protoc -Iprotos --python_out=client_py \
	    --pyi_out=client_py --grpc_python_out=client_py $(PROTOS)
	printf '"""Generated from protos/tffreeze/v1 by `make gen`. Do not edit."""\n' > $(GEN)/__init__.py
	touch $(STUBS)

serve: setup
	$(BIN)/tffreeze serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" ./examples/demo.sh

test: setup
	$(BIN)/python -m pytest -q tests

test-unit: setup
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	$(BIN)/python bench/freeze_vs_anchor.py

bench-breadth: setup
	$(BIN)/python bench/breadth.py

clean:
	rm -rf $(GEN) $(DATA) demo-out .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
