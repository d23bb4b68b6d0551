# Two entry points (see README): `make run` starts the dashboard, `make test` runs the whole suite.
# Both create .venv on first use and are fast on the second run (install stamps keyed on the requirement files).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
ADDRESS ?= 127.0.0.1
REQ_HASH := $(shell cat requirements.txt | sha1sum | cut -c1-12)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export EQUILAB_CACHE   ?= $(CURDIR)/.cache/equilab
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test install install-dev chromium lint pytest clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime-$(REQ_HASH): requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m engine precompile
	@rm -f $(VENV)/.runtime-* && touch $@

$(VENV)/.dev-$(DEV_HASH): requirements.txt requirements-dev.txt $(VENV)/.runtime-$(REQ_HASH)
	$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.dev-* && touch $@

install: $(VENV)/.runtime-$(REQ_HASH)
install-dev: $(VENV)/.dev-$(DEV_HASH) chromium

# Debian's chromium drives the browser tests (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: install
	$(VENV)/bin/streamlit run app/serve.py --server.address $(ADDRESS) --server.port $(PORT) \
	  --server.headless true --browser.gatherUsageStats false

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

pytest: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint pytest

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
