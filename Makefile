# Set-up and test entry points. `make setup` is idempotent; `make lab` and `make test` run it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch used where no CUDA GPU is present. Where PyPI's wheel for this version is a CUDA
# build (Linux x86_64), point TORCH_INDEX at PyTorch's CPU index: make setup TORCH_INDEX=<url>.
TORCH_CPU_VERSION ?= 2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
# scenes per set in the regional-prompting and prompt-engineering tables (recorded with 50; outputs not compared)
NOTEBOOK_SCENES ?= 2
# Every test run ends with its slowest tests (notebooks: cells), so the CI time budget stays visible.
DURATIONS ?= --durations=15
STAMP := $(VENV)/.difftech-setup

.PHONY: setup browser lab test test-unit test-notebooks test-browser notebooks clean

setup: $(STAMP) browser

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  echo "CUDA GPU found: torch comes with the package's dependencies"; \
	else \
	  $(PY) -m pip install --quiet "torch==$(TORCH_CPU_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)); \
	fi
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Debian's Chromium drives the browser tests (Playwright's own browser download does not work offline).
browser:
	@if command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	else \
	  echo "The browser tests need Chromium: install it (Debian/Ubuntu: sudo apt-get install chromium)."; \
	  echo "Without it they are skipped (under CI=true they fail)."; \
	fi

lab: setup
	$(VENV)/bin/difftech-lab lab

test: setup
	status=0; \
	$(PY) -m pytest tests $(DURATIONS) $(PYTEST_ARGS) || status=$$?; \
	DIFFTECH_NOTEBOOK_SCENES=$(NOTEBOOK_SCENES) $(PY) -m pytest --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/notebooks/sanitize.cfg -p no:cacheprovider notebooks $(DURATIONS) $(PYTEST_ARGS) \
	  || status=$$?; \
	exit $$status

test-unit: setup
	$(PY) -m pytest tests/unit $(DURATIONS) $(PYTEST_ARGS)

test-notebooks: setup
	DIFFTECH_NOTEBOOK_SCENES=$(NOTEBOOK_SCENES) $(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/notebooks/sanitize.cfg notebooks $(DURATIONS) $(PYTEST_ARGS)

test-browser: setup
	$(PY) -m pytest tests/browser $(DURATIONS) $(PYTEST_ARGS)

# Re-execute the notebooks from their .py pairs and record their outputs (what nbval compares against).
notebooks: setup
	$(PY) tests/notebooks/execute.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
