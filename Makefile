# Two commands set everything up on a fresh machine:  make train   and   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
LOCK   := requirements/constraints.txt
CONFIG ?= configs/sine_maml.yaml
ARGS   ?=

.PHONY: install train eval lint test test-fast lock clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) torch==2.13.0
	$(PIP) install -q -c $(LOCK) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Meta-train the default config: Ray in-process with 2 shard actors, MLflow in ./mlflow.db.
train: install
	$(VENV)/bin/distmeta train $(CONFIG) $(ARGS)

# Style and layering: ruff (lint + format) and the import contracts in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check distmeta tests
	$(VENV)/bin/ruff format --check distmeta tests
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q --durations=15

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

# Re-pin the lock after changing pyproject's dependencies.
lock: install
	$(PIP) freeze --exclude-editable | sed 's/+cpu$$//' > $(LOCK).new
	@echo "review $(LOCK).new and move it over $(LOCK) (keep its header)"

clean:
	rm -rf $(VENV) checkpoints mlartifacts mlflow.db outputs
