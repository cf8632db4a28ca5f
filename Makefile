# Two commands on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: install demo test lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

## Generate a small realistic archive and run every phase on it
demo: install
	$(VENV)/bin/padocc-like demo --dir demo-work

## Lint, then every test, including the real-data suite when ../shared/realdata exists
test: install
	$(VENV)/bin/ruff check padocc_like tests bench
	$(PY) -m pytest --realdata $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check padocc_like tests bench
	$(VENV)/bin/ruff format --check padocc_like tests bench

format: install
	$(VENV)/bin/ruff format padocc_like tests bench
	$(VENV)/bin/ruff check --fix padocc_like tests bench

clean:
	rm -rf demo-work .pytest_cache
