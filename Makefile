# The two commands a new user needs:  make run   (the whole system)   and   make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
CONFIG ?= config/demo.yaml

.PHONY: run test lint install services bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: $(STAMP)       ## install, then run API + worker + scheduler + sandbox on the demo config
	$(BIN)/broadcaster --config $(CONFIG) up

services:           ## start Redis / PostgreSQL on loopback when they are down (needs root)
	@bash .ci/services

lint: $(STAMP)      ## ruff (pyflakes, pycodestyle, isort, bugbear, pyupgrade, simplify, …) and mypy
	$(BIN)/ruff check broadcaster tests
	$(BIN)/mypy

test: $(STAMP) services lint   ## install, start services if needed, lint, run every test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) services  ## performance figures (not part of the tests)
	$(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
