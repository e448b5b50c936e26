# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# pip (not uv/poetry) on purpose: the machine's pip configuration resolves torch and
# torchvision to the releases on local disk.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# glibc keeps freed memory in the process: 2x faster CPU inference here (DESIGN.md).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: demo test lint typecheck pytest benchmark clean chromium

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

# The atlas viewer's browser tests drive Debian's chromium through Playwright, which never downloads
# a browser here. Installed when missing (as root, with apt-get); elsewhere those tests skip, saying why.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "warning: no chromium: the browser tests will skip (Debian: apt-get install -y chromium)" >&2; \
	fi

pytest: $(VENV)/.installed-test chromium
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
	$(BIN)/python benchmarks/lens_site.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
