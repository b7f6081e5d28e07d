# bayes_osteo: every target creates .venv (Python 3.12+) when it is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Prefer the repo's .python-version (pyenv), then any python3.12 / python3.13 on PATH.
PYTHON_BOOT := $(shell for p in python3.12 python3.13 python3; do \
    if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then command -v $$p; break; fi; done)

.PHONY: all venv demo test test-fast bench lint clean

all: test

$(PY):
	@if [ -z "$(PYTHON_BOOT)" ]; then \
	  echo "error: bayes_osteo needs Python >= 3.12 (python3.12 or python3.13) on PATH; none found." >&2; \
	  echo "       Install one (e.g. 'pyenv install 3.12') and run make again." >&2; exit 1; fi
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m bayes_osteo.demo

test: $(STAMP)
	$(PY) -m pytest --doctest-modules bayes_osteo tests

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" --doctest-modules bayes_osteo tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check bayes_osteo tests benchmarks

clean:
	rm -rf $(VENV) reports .pytest_cache
