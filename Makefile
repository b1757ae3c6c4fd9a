# snnet-export: `make demo` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STUBS  := $(VENV)/trt-stubs
STAMP  := $(VENV)/.installed
# torch's CUDA build also runs on CPU; torchvision (needed by timm) has no CPU-only build here.
TORCH  ?= torch==2.15.0 torchvision==0.29.2

.PHONY: install demo test lint typecheck docs clean gpu-check native native-asan native-traces native-test native-example install-native

install: $(STAMP)

$(STAMP): setup.py setup.cfg Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[train,plot,dev,docs,serve]'
	# TensorRT type stubs live outside the runtime venv's site-packages: installed there they
	# would make `import tensorrt` succeed as an empty namespace package.
	$(PY) -m pip install -q --no-deps --upgrade --target $(STUBS) tensorrt-stubs==10.13.0.35.1
	$(PY) tools/patch_trt_stubs.py $(STUBS)
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snnet-export demo

lint: $(STAMP)
	$(PY) -m ruff check snnet_export tests benchmarks tools
	$(PY) tools/import_graph.py
	@big=$$(find snnet_export -name '*.py' -exec wc -l {} + | awk '$$2 != "total" && $$1 > 400'); \
	if [ -n "$$big" ]; then echo "modules over 400 lines:"; echo "$$big"; exit 1; fi

# mypy over the whole package (setup.cfg [mypy] files = snnet_export); the torch-free deploy side
# with --strict's flags (the setup.cfg [mypy-snnet_export....] section).
typecheck: $(STAMP)
	MYPYPATH=$(STUBS) $(PY) -m mypy

# The documentation site (docs/ + mkdocs.yml) into site/ (git-ignored); --strict fails on a broken
# link, a missing page or anchor, or a page left out of the nav. Builds offline. (Not --quiet:
# mkdocs 1.6 with --quiet hides the warnings and then does not abort on them.)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test: $(STAMP) lint typecheck docs native-test
	$(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) build *.egg-info site

# On a machine with an NVIDIA GPU (and TensorRT): build, run, compare and time a few DeiT stitches.
# Without a GPU it says so and exits 0 without writing a results file (see benchmarks/gpu_check.py).
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

# ---- the native selector library (native/, docs/native.md) ----
# Build folders live under .native-build/ (git-ignored). nlohmann-json comes from the system's CMake
# config, else from the nlohmann-json pip package in the dev extra; cmake/ninja from the system, else pip.
NATIVE     := .native-build
PREFIX     ?= /usr/local
CONF_SEED  ?= 20261203
CONF_COUNT ?= 300
NLOHMANN    = $$($(PY) -c 'import nlohmann_json, os; print(os.path.join(os.path.dirname(nlohmann_json.__file__), "include"))')
GEN         = $$(command -v ninja >/dev/null 2>&1 || test -x $(VENV)/bin/ninja && echo "-G Ninja")
NATIVE_CFG  = -DSNNET_NLOHMANN_INCLUDE_DIR=$(NLOHMANN) -DSNNET_TRACES_DIR=$(abspath $(NATIVE)/traces)

$(NATIVE)/.tools: $(STAMP)
	@mkdir -p $(NATIVE)
	@if ! command -v cmake >/dev/null 2>&1 || ! cmake --version | awk 'NR==1{split($$3,v,"."); exit !(v[1]>3 || (v[1]==3 && v[2]>=20))}'; then \
		echo "no cmake >= 3.20 on this machine: installing cmake and ninja into $(VENV)"; \
		$(PY) -m pip install -q 'cmake>=3.20' ninja; fi
	@touch $@

native: $(NATIVE)/.tools
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake -S native -B $(NATIVE)/release $(GEN) -DCMAKE_BUILD_TYPE=Release $(NATIVE_CFG) >/dev/null
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --build $(NATIVE)/release

# the same sources and tests with AddressSanitizer + UndefinedBehaviorSanitizer
native-asan: $(NATIVE)/.tools
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake -S native -B $(NATIVE)/asan $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSNNET_SANITIZE=ON $(NATIVE_CFG) >/dev/null
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --build $(NATIVE)/asan

# conformance traces from the Python Selector (a fixed seed; any seed must agree)
native-traces: $(STAMP)
	rm -rf $(NATIVE)/traces
	$(VENV)/bin/snnet-export conformance generate --seed $(CONF_SEED) --count $(CONF_COUNT) -o $(NATIVE)/traces

native-test: native native-asan native-traces
	cd $(NATIVE)/release && ctest --output-on-failure
	cd $(NATIVE)/asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	$(MAKE) --no-print-directory native-example

install-native: native
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --install $(NATIVE)/release --prefix $(PREFIX)

# install into a temporary prefix; build and run the example through find_package and through
# pkg-config, and replay the traces with the installed snnet-select-replay
native-example: native native-traces
	rm -rf $(NATIVE)/prefix $(NATIVE)/example $(NATIVE)/example-folder
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --install $(NATIVE)/release --prefix $(abspath $(NATIVE)/prefix) >/dev/null
	$(VENV)/bin/snnet-export -q conformance folder -o $(NATIVE)/example-folder
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake -S native/examples -B $(NATIVE)/example $(GEN) -DCMAKE_PREFIX_PATH=$(abspath $(NATIVE)/prefix) >/dev/null
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --build $(NATIVE)/example
	$(NATIVE)/example/select_example $(NATIVE)/example-folder profile.synthetic.json
	lib=$$(dirname $$(find $(abspath $(NATIVE)/prefix) -name snnet_select.pc)); \
	PKG_CONFIG_PATH=$$lib cc -std=c99 native/examples/select_example.c $$(PKG_CONFIG_PATH=$$lib pkg-config --cflags --libs snnet_select) \
		-Wl,-rpath,$$(dirname $$lib) -o $(NATIVE)/example/select_example_pkgconfig
	$(NATIVE)/example/select_example_pkgconfig $(NATIVE)/example-folder profile.synthetic.json | tail -n 1 | cut -c1-120
	$(NATIVE)/prefix/bin/snnet-select-replay $(NATIVE)/traces
