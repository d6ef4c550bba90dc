# pitools — the two commands of the README are `make run` and `make test`.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PROFILE ?= demo
LOCK    := requirements.lock
# two pytest processes (pytest-xdist), a test file each at a time: its fixtures stay in one process
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: run test bench clean-venv

## make run: set up .venv if needed, build the demo universe if there is no store, run one night
run: $(VENV)/.installed-run
	$(PY) -m pitools demo-data --profile $(PROFILE) --if-missing
	$(PY) -m pitools nightly --profile $(PROFILE)

## make test: set up .venv with the test extras and run pytest
test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_ARGS)

## make bench: the benchmarks of benchmarks/ (slow; builds a full-size demo store once)
bench: $(VENV)/.installed-test
	$(PY) benchmarks/run_all.py

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "pitools needs Python >= 3.11 as '$(PYTHON)'; found: $$($(PYTHON) --version 2>&1)."; \
	  echo "Install it (Raspberry Pi OS / Debian 12: sudo apt install python3) or run: make PYTHON=python3.12 ..."; exit 2; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "Could not create $(VENV). On Debian/Ubuntu install the venv module: sudo apt install python3-venv"; exit 2; }

# Re-install when the dependency list or the pins change.
$(VENV)/.installed-run: $(VENV)/bin/python pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet --constraint $(LOCK) --editable .
	@touch $@

$(VENV)/.installed-test: $(VENV)/bin/python pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet --constraint $(LOCK) --editable '.[test]'
	@touch $@ $(VENV)/.installed-run

clean-venv:
	rm -rf $(VENV)
