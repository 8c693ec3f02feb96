# The README's two commands: `make run` and `make test`. Each creates the
# virtual environment and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "nemo-router needs Python 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/nemo-router run

test: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider

# Pure tests only: no Ray, a few seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not ray"

# The side-by-side benchmark (direct / router / LiteLLM); see the README.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	$(BIN)/python benchmarks/compare.py

clean:
	rm -rf $(VENV) turnlog-data build *.egg-info
