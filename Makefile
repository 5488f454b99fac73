# Two commands do everything on a fresh machine with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The newest versions pyproject.toml allows, for `make test-latest` (never part of CI).
LATEST := .venv-latest
LOCK := requirements.lock
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# The HTML report's browser tests drive Debian's chromium; playwright never fetches a browser.
CHROMIUM := /usr/bin/chromium
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# The one check command CI mirrors: formatter, linter, strict type checker, then the tests.
CHECK = $(1) -m ruff format --check src tests benchmarks tools \
	&& $(1) -m ruff check src tests benchmarks tools \
	&& $(1) -m mypy src/pinchpoint \
	&& $(1) -m pytest -q

.PHONY: demo test test-latest lock bench clean

# Exactly the locked versions, nothing resolved at install time (--no-deps): the lock pins the whole
# tree, torch 2.13.0+cpu included, and pip check proves it is complete and consistent.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pinchpoint demo --out pinchpoint-demo

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The browser tests included: chromium is installed above when missing.
test: $(STAMP) $(CHROMIUM)
	$(call CHECK,$(PY))

# The drift check: the newest versions of everything pyproject.toml allows (torch stays the CPU
# build of constraints.txt), in a venv of its own, then the same checks. Not part of CI.
test-latest: $(CHROMIUM)
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager \
		-c constraints.txt -e '.[torch,zoo,optimize,dev]'
	$(LATEST)/bin/python -m pip check
	$(LATEST)/bin/python tools/lock.py --against $(LATEST)/bin/python
	$(call CHECK,PINCHPOINT_TEST_LATEST=1 $(LATEST)/bin/python)

# Refresh the lock from pyproject.toml, keeping the pins it still allows (UPGRADE=1: the newest of
# everything); prints what changed.
lock: $(STAMP)
	$(PY) tools/lock.py $(if $(UPGRADE),--upgrade)

bench: $(STAMP)
	$(PY) benchmarks/recorder_overhead.py

clean:
	rm -rf $(VENV) $(LATEST) pinchpoint-demo .pytest_cache .ruff_cache
