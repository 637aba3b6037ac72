# The user's commands. Each bootstraps what it needs on a fresh Debian/Ubuntu
# machine with Python 3.11: uv (in .tools/, never the system Python), the
# workspace venv (.venv), and, when root, the system servers the tests use.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
UV_HOME := .tools/uv
UV := $(or $(shell command -v uv 2>/dev/null),$(abspath $(UV_HOME))/bin/uv)
VENV := .venv
export OMP_NUM_THREADS ?= 1
export UV_PYTHON ?= $(PYTHON)
export UV_LINK_MODE ?= copy
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help demo test lint fmt bench serve up docs sysdeps venv clean

help:
	@echo "make demo   run the main job on embedded defaults"
	@echo "make test   run the test suite (starts its own Redis and PostgreSQL)"
	@echo "make lint   ruff, mypy --strict, import-linter"
	@echo "make bench  side-by-side benchmarks (not run in CI)"
	@echo "make docs   build the documentation site into site/"

$(UV):
	@echo "== installing uv into $(UV_HOME)"
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard packages/*/pyproject.toml)
	$(UV) sync --locked --all-packages
	@touch $@

venv: $(VENV)/.synced

# Servers the tests start themselves: install when missing and root.
sysdeps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "== apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    systemctl disable --now redis-server postgresql >/dev/null 2>&1 || true; \
	  else echo "please install:$$missing (e.g. sudo apt-get install$$missing)"; exit 1; fi; \
	fi

demo: venv
	$(VENV)/bin/lanewise demo

# The hf-local tests need torch: the CPU build from a local wheel when the machine
# has one (never PyPI's Linux torch, a multi-GB CUDA build), plus the transformers
# the lock pins for the [hf] extra. Skipped when already importable; `uv sync`
# removes both again only when the lock changes.
test: venv sysdeps
	@wheel=/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl; \
	if [ -f $$wheel ] && ! $(VENV)/bin/python -c "import torch, transformers" 2>/dev/null; then \
	  echo "== installing the CPU build of torch and transformers (hf-local tests)"; \
	  $(UV) pip install --python $(VENV)/bin/python $$wheel "transformers==4.57.6" "safetensors==0.8.0"; \
	fi
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy packages/*/src
	$(VENV)/bin/lint-imports

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

serve: venv
	$(VENV)/bin/lanewise serve

bench: venv
	$(VENV)/bin/python -m bench

docs: venv
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .tools .lanewise .mypy_cache .ruff_cache
