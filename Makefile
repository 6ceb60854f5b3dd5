# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (hyperrec needs Python 3.11; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements/nodeps.txt
	touch $(STAMP)

test: setup
	$(BIN)/pytest -q

demo: setup
	$(BIN)/hyperrec demo

clean:
	rm -rf $(VENV) experiments/runs experiments/results
