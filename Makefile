# cloudrift developer commands. `make test` and `make demo` work on a fresh clone:
# they install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REDIS_STAMP := .tools/redis-server.path
CHROMIUM_STAMP := .tools/chromium.path
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install test lint typecheck pytest demo bench clean

install: $(STAMP) $(REDIS_STAMP) $(CHROMIUM_STAMP) .tools/azurite/node_modules/.bin/azurite-blob

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

$(REDIS_STAMP): $(STAMP)
	mkdir -p .tools
	scripts/ensure-redis.sh $(PY) > $(REDIS_STAMP).tmp && mv $(REDIS_STAMP).tmp $(REDIS_STAMP)

# Headless Chromium for tests/example_app/test_browser.py (Debian's package; Playwright
# drives it through executable_path, never its own browser download).
$(CHROMIUM_STAMP):
	mkdir -p .tools
	scripts/ensure-chromium.sh > $(CHROMIUM_STAMP).tmp && mv $(CHROMIUM_STAMP).tmp $(CHROMIUM_STAMP)

.tools/azurite/node_modules/.bin/azurite-blob:
	scripts/ensure-azurite.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check cloudrift cloudrift_fastapi tests example_app benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict cloudrift cloudrift_fastapi

# Three workers (pytest-xdist), one test class or module each at a time: most of the suite
# waits on servers and child processes, so three overlap well even on two cores. Each
# worker starts its own stand-ins on free ports. PYTEST_ARGS adds options (e.g. -n 0).
pytest: install
	CLOUDRIFT_REDIS_SERVER="$$(cat $(REDIS_STAMP))" CLOUDRIFT_CHROMIUM="$$(cat $(CHROMIUM_STAMP))" \
	  $(PY) -m pytest -n 3 --dist loadscope --durations=25 $(PYTEST_ARGS)

test: install lint typecheck pytest

# The demo needs only the Python environment (no redis-server, no Azurite).
demo: $(STAMP)
	@if [ -d example_app ]; then \
	  HOST=$(HOST) PORT=$(PORT) $(PY) -m example_app; \
	else \
	  echo "example_app does not exist yet (see issue 9); nothing to run."; exit 1; \
	fi

bench: install
	CLOUDRIFT_REDIS_SERVER="$$(cat $(REDIS_STAMP))" $(PY) -m benchmarks $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .tools .demo-data .mypy_cache .ruff_cache .pytest_cache
