# One-command set-up, search and tests (see README.md).
#   make setup   installs missing system packages (apt, when root), creates .venv, installs the project
#   make search  set-up + a 20-trial search of hybrid_conv_attn on the embedded clutter task
#   make test    set-up + the test suite in 2 pytest-xdist workers, each taking the next test as it
#                finishes one (db tests on SQLite and a throw-away PostgreSQL server, the
#                dashboard in headless chromium). --dist loadgroup hands out one test at a time,
#                except that the tests marked with one xdist_group (those sharing a module's
#                search) go to one worker, which runs that search once (pytest < 9.2: see
#                pyproject.toml). Plain -n 2 (load) gives each worker a quarter of the suite in
#                collection order up front, which queued the end-to-end tests on one worker:
#                848.8 s in pytest against 740.0 s (README "Measured performance")
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := libopencv-dev libturbojpeg0-dev pkg-config postgresql chromium chromium-driver sqlite3
BUDGET ?= 20
SPACE ?= hybrid_conv_attn

.PHONY: setup system-packages search test lint clean bench

setup: system-packages $(STAMP)

system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "error: missing system packages:$$missing; run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 11), \
	  f"Python 3.10 or 3.11 needed (ffcv builds with distutils); got {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip setuptools wheel

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@# no wheel cache: torch's CUDA wheels would sit there twice (~3 GB) beside the ~7 GB .venv
	$(PY) -m pip install -q --no-cache-dir -e '.[dev]'
	@touch $(STAMP)

search: setup
	$(PY) run_search.py --space $(SPACE) --budget $(BUDGET)

test: setup
	NAS_REQUIRE_POSTGRES=1 NAS_REQUIRE_BROWSER=1 $(PY) -m pytest -q -n 2 --dist loadgroup --durations=15

lint: setup
	$(VENV)/bin/ruff check nas nas_errors search_spaces proxies db tests run_search.py benchmarks
	$(VENV)/bin/lint-imports

bench: setup
	$(PY) benchmarks/bench_cost.py

clean:
	rm -rf runs .pytest_cache
