# tffreeze build. `make demo` and `make test` are the two commands that matter;
# both set everything up first (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tffreeze-setup
DEV_STAMP := $(VENV)/.tffreeze-setup-dev
# apt-get as root, else through sudo (a developer's machine)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
PROTOS := $(wildcard protos/tffreeze/v1/*.proto)
GEN    := api_py/tffreeze_api/v1
STUBS  := $(patsubst protos/tffreeze/v1/%.proto,$(GEN)/%_pb2.py,$(PROTOS))
BUF    := .tools/node_modules/.bin/buf
HOST   ?= 127.0.0.1
PORT   ?= 50051
DATA   ?= .tffreeze-data

CS_SRC := $(wildcard client_csharp/src/*.cs)
CS_BIND := client_csharp/binding/TensorFlow.cs
CS_HELP := $(wildcard client_csharp/helpers/*.cs)
CS_BIN := client_csharp/bin
CS_GEN := client_csharp/bin/gen/TfFreeze.V1.g.cs
TF115  := .tf115
PY37   ?= $(shell pyenv prefix 3.7.16 2>/dev/null)/bin/python3.7


.PHONY: web chromium node
.PHONY: libcorpus-env setup setup-dev gen docs lint-proto serve demo test test-unit bench bench-formats bench-breadth bench-real bench-load csharp mono sandbox tf115 tf23 cpp cpp-deps bench-clients clean

# The web page (`make web`) too: `tffreeze serve --web-port` and the local server serve it.
setup: $(STAMP) $(STUBS) web

# Bytecode for our own packages, written at setup as pip does for a regular install: an
# editable install leaves it to the first import, which writes nothing where
# PYTHONDONTWRITEBYTECODE is set (as on the development machines) and then compiles
# ~15 modules from source at every CLI start (~13 ms of a ~0.1 s re-freeze).
COMPILE = $(BIN)/python -m compileall -q api_py client_py server >/dev/null

# Installs the pinned dependencies and the three packages (editable: a path in a .pth file,
# which a CLI start reads in ~0.1 ms, where setuptools' default import hook costs ~13 ms) into .venv/.
$(STAMP): requirements.txt api_py/pyproject.toml client_py/pyproject.toml server/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e api_py -e client_py -e server \
		--config-settings editable_mode=compat
	$(COMPILE)
	touch $@

# Tests and benchmarks: requirements-dev.txt on top (pytest, moto, the model corpus, ...).
setup-dev: $(DEV_STAMP)
$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Python stubs are generated from protos/ by the build, never edited by hand:
# protoc writes package tffreeze.v1, which the API package ships as tffreeze_api.v1.
gen: $(STUBS)
$(STUBS) &: $(PROTOS) $(STAMP) tools/gen_python.sh
	tools/gen_python.sh $(BIN)/python
	touch $(STUBS)
	$(COMPILE)

# The web page (tffreeze serve's gRPC-Web port, GET /): npm packages from web/package-lock.json,
# TypeScript messages generated from protos/ (protoc-gen-es), bundled by esbuild into
# server/tffreeze_server/web/app.js; never edited by hand, nothing fetched at run time.
WEB_BUNDLE := server/tffreeze_server/web/app.js
web: $(WEB_BUNDLE)
# Quiet (one line; ~15 s from a fresh clone, nothing when up to date): `make setup` and `make demo` run it.
web/node_modules/.stamp: web/package.json web/package-lock.json | node
	@echo "building the web page (web/ -> $(WEB_BUNDLE))"
	@cd web && npm ci --silent --no-audit --no-fund
	@touch $@
$(WEB_BUNDLE): web/node_modules/.stamp web/buf.gen.yaml $(PROTOS) $(wildcard web/proto/google/rpc/*.proto) $(wildcard web/src/*.ts)
	@cd web && rm -rf gen && node_modules/.bin/buf generate
	@cd web && node_modules/.bin/tsc --noEmit -p .
	@web/node_modules/.bin/esbuild web/src/app.ts --bundle --minify --format=iife --target=es2020 --log-level=warning \
		--outfile=$@

# Node.js and npm from Debian (the web page's build, buf's lint), when missing.
node:
	@command -v npm >/dev/null 2>&1 || { echo "installing nodejs and npm (Debian)"; \
	  $(APT_INSTALL) nodejs npm >/dev/null; }

# Chromium from Debian, for the page's browser test.
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (Debian)"; \
	  $(APT_INSTALL) chromium >/dev/null; }

# The contract's lint (and, once a contract-v* tag exists, its breaking-change
# check against the newest such tag). buf comes from npm, pinned.
$(BUF): | node
	mkdir -p .tools && cd .tools && npm install --no-save --silent --no-audit --no-fund @bufbuild/buf@1.75.0

# The manifest's JSON schema, derived from the proto (a test keeps it current).
docs: setup
	mkdir -p docs
	$(BIN)/python -c 'import json; from tffreeze_api import manifest; print(json.dumps(manifest.json_schema(), indent=2))' > docs/manifest.schema.json

lint-proto: $(BUF)
	cd protos && ../$(BUF) lint
	@tag=$$(git tag --list 'contract-v*' --sort=-v:refname | head -n1); \
	if [ -n "$$tag" ]; then echo "buf breaking against $$tag"; \
	  cd protos && ../$(BUF) breaking --against "../.git#tag=$$tag,subdir=protos"; \
	else echo "buf breaking: no contract-v* tag yet, nothing to compare against"; fi

serve: setup sandbox web
	$(BIN)/tffreeze serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

demo: setup sandbox
	PATH="$(CURDIR)/$(BIN):$$PATH" ./examples/demo.sh

test: setup setup-dev sandbox lint-proto csharp tf115 tf23 cpp web chromium libcorpus-env
	$(BIN)/python -m pytest -q tests

test-unit: setup setup-dev
	$(BIN)/python -m pytest -q tests/unit

bench: setup setup-dev
	$(BIN)/python bench/freeze_vs_anchor.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/task_sandbox.py
	$(BIN)/python bench/shared_store.py

bench-breadth: setup setup-dev
	$(BIN)/python bench/breadth.py

# Real architectures (tests/corpus.py): freeze_graph vs tffreeze auto/named/optimize,
# and the optimize option's cost on a ResNet-50; then generated training graphs with known
# answers (tests/generator.py, 500 per half): right/refused/wrong per half, what makes them wrong.
bench-real: setup setup-dev libcorpus-env
	$(BIN)/python bench/real_models.py
	$(BIN)/python bench/library_models.py
	$(BIN)/python bench/generated_graphs.py

# What --format onnx / tflite costs beside the plain freeze (conversion + the check in its runtime).
bench-formats: setup setup-dev sandbox
	$(BIN)/python bench/formats.py

# Load: 8 and 32 concurrent clients, p50/p99 with and without worker recycling.
bench-load: setup setup-dev sandbox
	$(BIN)/python bench/load.py

# C# client (Mono; mono-devel from Debian when mcs is missing, no NuGet needed):
#   bin/TfFreeze.TensorFlow.dll  the built-in TF binding (a subset of TensorFlowSharp's API)
#   bin/TfFreeze.dll             helpers (Manifest, Tensors, Npy, ModelRunner) on that binding
#   bin/tensorflowsharp/TfFreeze.TensorFlowSharp.dll  the same helpers for TensorFlowSharp,
#       compiled against obj/ref/TensorFlowSharp.dll (the binding in namespace TensorFlow)
#   bin/tffreeze-cs(.exe)        the CLI (gRPC-Web client + run); bin/BindByManifest.exe, the example
csharp: $(CS_BIN)/tffreeze-cs $(CS_BIN)/BindByManifest.exe $(CS_BIN)/tensorflowsharp/TfFreeze.TensorFlowSharp.dll

# Run time per call of `tffreeze run`, `tffreeze-cs run` (built-in, TF 1.15, real TensorFlowSharp)
# and `tffreeze-cpp run` on one model, in one run; then first and unchanged freezes of a
# 256 MiB checkpoint by the three clients side by side, against freeze_graph.
bench-clients: setup setup-dev csharp tf115 cpp
	$(BIN)/python bench/run_clients.py
	$(BIN)/python bench/clients_freeze.py

# C++ client (client_cpp/): the library tffreeze::client, the CLI (client_cpp/bin/tffreeze-cpp)
# and the CMake package (tffreeze_DIR=client_cpp/build). Debian's gRPC/protobuf toolchain is
# installed when missing; TensorFlow's C API header comes from the TensorFlow wheel in .venv.
CPP_DEBS := cmake g++ pkg-config libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev

cpp-deps:
	@dpkg -s $(CPP_DEBS) >/dev/null 2>&1 || { echo "installing the C++ toolchain (Debian): $(CPP_DEBS)"; \
	  $(APT_INSTALL) $(CPP_DEBS) >/dev/null; }

cpp: setup cpp-deps
	@inc=$$(ls -d $(CURDIR)/$(VENV)/lib/python3*/site-packages/tensorflow/include | head -n 1); \
	cmake -S client_cpp -B client_cpp/build -DCMAKE_BUILD_TYPE=Release -DTFFREEZE_TF_INCLUDE=$$inc >/dev/null
	cmake --build client_cpp/build -j2
	mkdir -p client_cpp/bin && cp client_cpp/build/tffreeze-cpp client_cpp/bin/tffreeze-cpp

# The worker sandbox (server/tffreeze_server/sandbox.py): bubblewrap from Debian.
# Without it the server still runs, but refuses TF2 SavedModels and verify.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { echo "installing bubblewrap (Debian)"; \
	  $(APT_INSTALL) bubblewrap >/dev/null; }

mono:
	@command -v mcs >/dev/null 2>&1 || { echo "installing mono-devel (Debian)"; \
	  $(APT_INSTALL) mono-devel >/dev/null; }

# The C# messages are generated from protos/ (via the Python descriptors), never hand-edited.
$(CS_GEN): $(STUBS) tools/gen_csharp.py
	mkdir -p $(dir $@)
	$(BIN)/python tools/gen_csharp.py $@

MCS := mcs -nologo -warnaserror -r:System.dll -r:System.Core.dll
CS_REF := client_csharp/obj/ref/TensorFlowSharp.dll

$(CS_BIN)/TfFreeze.TensorFlow.dll: $(CS_BIND) | mono
	mkdir -p $(CS_BIN)
	$(MCS) -target:library -out:$@ $(CS_BIND)

$(CS_BIN)/TfFreeze.dll: $(CS_HELP) $(CS_BIN)/TfFreeze.TensorFlow.dll
	$(MCS) -target:library -out:$@ -r:$(CS_BIN)/TfFreeze.TensorFlow.dll $(CS_HELP)

$(CS_REF): $(CS_BIND) | mono
	mkdir -p $(dir $@)
	$(MCS) -target:library -define:TENSORFLOWSHARP_SURFACE -out:$@ $(CS_BIND)

$(CS_BIN)/tensorflowsharp/TfFreeze.TensorFlowSharp.dll: $(CS_HELP) $(CS_REF)
	mkdir -p $(dir $@)
	$(MCS) -target:library -define:TENSORFLOWSHARP -out:$@ -r:$(CS_REF) $(CS_HELP)

# `tffreeze-cs --version`: the version of client_py/tffreeze/__init__.py, the one source (`tffreeze --version`'s).
CS_VERSION := $(CS_BIN)/gen/Version.g.cs
$(CS_VERSION): client_py/tffreeze/__init__.py
	mkdir -p $(dir $@)
	sed -n 's/^__version__ = "\(.*\)"$$/namespace TfFreeze { static class BuildInfo { public const string Version = "\1"; } }/p' $< > $@
	grep -q BuildInfo $@

$(CS_BIN)/tffreeze-cs.exe: $(CS_SRC) $(CS_GEN) $(CS_VERSION) $(CS_BIN)/TfFreeze.dll
	$(MCS) -out:$@ -r:Mono.Posix.dll -r:$(CS_BIN)/TfFreeze.dll -r:$(CS_BIN)/TfFreeze.TensorFlow.dll $(CS_SRC) $(CS_GEN) $(CS_VERSION)

$(CS_BIN)/BindByManifest.exe: client_csharp/examples/BindByManifest.cs $(CS_BIN)/TfFreeze.dll
	$(MCS) -out:$@ -r:$(CS_BIN)/TfFreeze.dll -r:$(CS_BIN)/TfFreeze.TensorFlow.dll $<

$(CS_BIN)/tffreeze-cs: client_csharp/tffreeze-cs.sh $(CS_BIN)/tffreeze-cs.exe
	cp $< $@ && chmod +x $@

# TF 1.15.0, the runtime TensorFlowSharp bundles, in a Python 3.7 venv (pyenv) for the
# tests and `tffreeze-cs run --runtime tf115`. Skipped, with the reason, where
# Python 3.7 is absent (the TF 1.15 tests then skip, unless TFFREEZE_REQUIRE_TF115=1).
TF115_CORE := $(TF115)/lib/python3.7/site-packages/tensorflow_core/python/_pywrap_tensorflow_internal.so

tf115:
	@if [ -x "$(TF115)/bin/python" ] && [ -f "$(TF115_CORE)" ]; then exit 0; fi; \
	if [ ! -x "$(PY37)" ]; then echo "make tf115: no Python 3.7 (pyenv prefix 3.7.16): install it (pyenv install 3.7.16) or give one (make tf115 PY37=/path/to/python3.7); until then --runtime tf115 cannot run and TF 1.15's tests skip"; exit 0; fi; \
	echo "make tf115: installing tensorflow-cpu==1.15.0 into $(TF115) (Python 3.7)"; \
	rm -rf $(TF115) && $(PY37) -m venv $(TF115) && $(TF115)/bin/pip install -q --disable-pip-version-check \
	    tensorflow-cpu==1.15.0 'protobuf<3.21'

# TF 2.3.1, the runtime ML.NET (Microsoft.ML.TensorFlow) and TensorFlow.NET 0.20-0.30 run
# (SciSharp.TensorFlow.Redist 2.3.1), in a Python 3.8 venv (pyenv), for --target mlnet's
# tests. Skipped, with the reason, where Python 3.8 is absent (unless TFFREEZE_REQUIRE_TF23=1).
TF23   := .tf23
PY38   ?= $(shell pyenv prefix 3.8.18 2>/dev/null)/bin/python3.8
TF23_CORE := $(TF23)/lib/python3.8/site-packages/tensorflow/python/_pywrap_tensorflow_internal.so

tf23:
	@if [ -x "$(TF23)/bin/python" ] && [ -f "$(TF23_CORE)" ]; then exit 0; fi; \
	if [ ! -x "$(PY38)" ]; then echo "make tf23: no Python 3.8 (pyenv prefix 3.8.18): install it (pyenv install 3.8.18) or give one (make tf23 PY38=/path/to/python3.8); until then TF 2.3.1's tests skip"; exit 0; fi; \
	echo "make tf23: installing tensorflow-cpu==2.3.1 into $(TF23) (Python 3.8)"; \
	rm -rf $(TF23) && $(PY38) -m venv $(TF23) && $(TF23)/bin/pip install -q --disable-pip-version-check \
	    tensorflow-cpu==2.3.1 'protobuf<3.21' 'numpy<1.19'

# The library corpus (tests/libcorpus.py, issue 33): models built by others' libraries from PyPI.
# .venv-libcorpus: the libraries of requirements-libcorpus.txt, over the TensorFlow 2.21, tf-keras
# and tf-slim of .venv (a .pth file: nothing is installed into .venv, nothing downloaded twice);
# TF1-only libraries (requirements-libcorpus-tf1.txt) in a folder run by the TF 1.15 venv of `make tf115`.
LIBC       := .venv-libcorpus
LIBC_STAMP := $(LIBC)/.libcorpus-setup
LIBC_TF1   := .venv-libcorpus-tf1
libcorpus-env: $(LIBC_STAMP) $(LIBC_TF1)/.libcorpus-setup
$(LIBC_STAMP): requirements-libcorpus.txt $(DEV_STAMP)
	rm -rf $(LIBC) && $$($(BIN)/python -c 'import sys; print(sys._base_executable)') -m venv $(LIBC)
	$(BIN)/python -c 'import site; print(site.getsitepackages()[0])' > \
	    $$($(LIBC)/bin/python -c 'import site; print(site.getsitepackages()[0])')/tffreeze-venv.pth
	$(LIBC)/bin/python -m pip install -q --disable-pip-version-check -r requirements-libcorpus.txt
	$(LIBC)/bin/python -m pip install -q --disable-pip-version-check --no-deps keras-tcn==3.5.7
	touch $@
$(LIBC_TF1)/.libcorpus-setup: requirements-libcorpus-tf1.txt | tf115
	@if [ ! -x "$(TF115)/bin/python" ]; then echo "libcorpus-env: no $(TF115); the TF1 library models will skip"; exit 0; fi; \
	rm -rf $(LIBC_TF1) && $(TF115)/bin/pip install -q --disable-pip-version-check --no-deps --target $(LIBC_TF1) \
	    -r requirements-libcorpus-tf1.txt && touch $@

clean:
	rm -rf $(GEN) build $(DATA) demo-out .pytest_cache $(CS_BIN) client_csharp/obj client_cpp/build client_cpp/bin
	find . -name __pycache__ -prune -exec rm -rf {} +
