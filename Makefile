# Two commands do everything on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The HTML report's browser tests drive Debian's chromium; playwright never fetches a browser.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[zoo,optimize,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pinchpoint demo --out pinchpoint-demo

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The one check command CI mirrors: formatter, linter, strict type checker, then the tests
# (the browser tests included: chromium is installed above when missing).
test: $(STAMP) $(CHROMIUM)
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy src/pinchpoint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/recorder_overhead.py

clean:
	rm -rf $(VENV) pinchpoint-demo .pytest_cache .ruff_cache
