# Two commands on a fresh machine with only Python:  `make demo`  and  `make test`.
# torch is installed first, on its own, so that no dependency pulls a CUDA build by accident.
# Elsewhere, a CPU-only machine gets the CPU wheel with:
#   make demo TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_ARGS ?=
BIN = $(VENV)/bin

.PHONY: demo test browser postgres clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)" $(TORCH_ARGS)
	touch $@

$(VENV)/.core: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.core
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: $(VENV)/.core
	$(BIN)/trainwise demo

# The HTML report's browser test drives Debian's headless Chromium through chromedriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# The sweep's PostgreSQL tests start a throwaway server from Debian's binaries (as the
# `postgres` user when run as root); the package's own cluster is not used.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || { \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# Two pytest-xdist workers (one torch thread each, tests/conftest.py), a file per worker at a
# time: a module's shared fixtures (a trained fit run, a started server) are built once.
test: $(VENV)/.test browser postgres
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
