# Two commands on a fresh machine: `make demo` and `make test`. Each creates the environment first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.atarchive-installed
# breizorro (self-calibration masks) lives in its own environment: its stimela pins pydantic < 2
BREIZORRO := $(VENV)/tools/breizorro/bin/breizorro
DEMO ?= demo
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv test demo bench clean doctor chromium wsclean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "atarchive needs Python 3.11 (casatools 6.7.0.31 wheels)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	@test -x $(BREIZORRO) || { $(PYTHON) -m venv $(VENV)/tools/breizorro && \
	  $(VENV)/tools/breizorro/bin/pip install -q 'breizorro==0.2.0'; }
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP) chromium wsclean
	$(BIN)/python -m pytest -q

# The report test loads the QA page in headless Chromium: Debian's package, installed if missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian chromium (report test)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "warning: could not install chromium; the report browser test will fail"; }

# The WSClean imager (steps.image.imager = "wsclean"): Debian's package, installed if missing.
wsclean:
	@command -v wsclean >/dev/null 2>&1 || { echo "installing Debian wsclean (imager)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wsclean >/dev/null) \
	  || echo "warning: could not install wsclean; imager = \"wsclean\" and its tests will fail"; }

doctor: $(STAMP)
	$(BIN)/atarchive doctor

# The demo: simulate a session in the real ATA layout, index it, run the chain, print status.
demo: $(STAMP) wsclean
	rm -rf $(DEMO)
	$(BIN)/atarchive simulate --preset demo --out $(DEMO)/storage
	mkdir -p $(DEMO)/work
	$(BIN)/atarchive --config examples/demo.toml scan
	$(BIN)/atarchive --config examples/demo.toml status
	$(BIN)/atarchive --config examples/demo.toml run
	$(BIN)/atarchive --config examples/demo.toml fluxes
	$(BIN)/atarchive --config examples/demo.toml report --list
	@echo "catalogue: $(DEMO)/catalogue.db   products: $(DEMO)/work"

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info
