# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# pip (not uv/poetry) on purpose: the machine's pip configuration resolves torch and
# torchvision to the releases on local disk.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# glibc keeps freed memory in the process: 2x faster CPU inference here (DESIGN.md).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: demo test lint typecheck pytest benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/spyglass demo --out out/demo
	$(BIN)/python -m spyglass.demo.atlas out/demo/atlas

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test: lint typecheck pytest

benchmark: $(VENV)/.installed-test
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/attributions.py
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/concepts.py
	$(BIN)/python benchmarks/sobol.py
	$(BIN)/python benchmarks/featureviz.py
	$(BIN)/python benchmarks/eva.py
	$(BIN)/python benchmarks/architectures.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
