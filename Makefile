# Two set-up commands: `make bench` and `make test`. Both create .venv when it is missing,
# install what changed (nothing when nothing changed) and run. `make test` also builds the
# documentation site with --strict (`make docs`), so a broken link or docstring reference fails it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
SRC    := pyproject.toml $(shell find bench methods metrics datasets configs -type f \( -name '*.py' -o -name '*.toml' \) 2>/dev/null)
ARGS   ?=
# `make test` runs the tests in one process per core (pytest-xdist; TEST_WORKERS=0: one process).
TEST_WORKERS ?= auto

.PHONY: bench test test-fast lint docs clean gpu-check

bench: $(VENV)/.installed
	$(BIN)/xaibench run synthetic $(ARGS)

test: $(VENV)/.installed $(VENV)/.dev lint docs
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: $(VENV)/.installed $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

# On a machine with a CUDA GPU: the CUDA-marked tests and the benchmarks on CUDA, figures to
# results/gpu_check/ (benchmarks/gpu_check.py; ARGS=--dry-run prints the steps anywhere).
gpu-check: $(VENV)/.installed $(VENV)/.dev
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check $(wildcard bench methods metrics datasets tests benchmarks examples docs)

# The documentation site (mkdocs.yml, docs/) into site/: the API reference from the installed
# package's docstrings, a page per registered plugin. --strict: any warning fails the build.
docs: $(VENV)/.installed $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Third-party dependencies: re-installed only when pyproject.toml changes.
$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(PIP) install "setuptools>=68" wheel
	$(PIP) install .
	touch $@

$(VENV)/.dev: $(VENV)/.deps
	$(PIP) install ".[dev]"
	touch $@

$(VENV)/.docs: $(VENV)/.deps
	$(PIP) install ".[docs]"
	touch $@

# The package itself (a regular, non-editable install): re-installed when a source file changes.
$(VENV)/.installed: $(SRC) $(VENV)/.deps
	rm -rf build
	$(PIP) install --quiet --no-deps --no-build-isolation --force-reinstall .
	rm -rf build
	touch $@

clean:
	rm -rf $(VENV) build site *.egg-info
