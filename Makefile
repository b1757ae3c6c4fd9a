# snnet-export: `make demo` and `make test` work on a fresh clone (they create .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STUBS  := $(VENV)/trt-stubs
STAMP  := $(VENV)/.installed
# torch's CUDA build also runs on CPU; torchvision (needed by timm) has no CPU-only build here.
TORCH  ?= torch==2.15.0 torchvision==0.29.2

.PHONY: install demo test lint typecheck docs clean gpu-check

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

test: $(STAMP) lint typecheck docs
	$(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) build *.egg-info site

# On a machine with an NVIDIA GPU (and TensorRT): build, run, compare and time a few DeiT stitches.
# Without a GPU it says so and exits 0 without writing a results file (see benchmarks/gpu_check.py).
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py
