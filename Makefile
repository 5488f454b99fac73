# Two commands do everything on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[zoo,optimize,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pinchpoint demo --out pinchpoint-demo

# The one check command CI mirrors: formatter, linter, strict type checker, then the tests.
test: $(STAMP)
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy src/pinchpoint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/recorder_overhead.py

clean:
	rm -rf $(VENV) pinchpoint-demo .pytest_cache .ruff_cache
