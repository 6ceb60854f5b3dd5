# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first; `make test` also the Triton
# sidecar's .venv-triton and schemathesis' .venv-schemathesis, then lints (ruff) and runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Triton sidecar (hyperrec/serve/triton_sidecar.py) runs in a venv of its own: nvidia-pytriton needs numpy<2.
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed
# schemathesis (OpenAPI fuzzing: tests/serve/test_openapi_fuzz.py, benchmarks/fuzz.py) in a venv of its own.
SCHEMATHESIS_VENV := .venv-schemathesis
SCHEMATHESIS_STAMP := $(SCHEMATHESIS_VENV)/.installed

.PHONY: setup triton-setup schemathesis-setup browser lint format test demo demo-ci bench clean

setup: $(STAMP) $(TRITON_STAMP) $(SCHEMATHESIS_STAMP)

triton-setup: $(TRITON_STAMP)

schemathesis-setup: $(SCHEMATHESIS_STAMP)

$(STAMP): pyproject.toml requirements/nodeps.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (hyperrec needs Python 3.11; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements/nodeps.txt
	touch $(STAMP)

$(TRITON_STAMP): requirements/triton.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (the Triton sidecar needs Python 3.11; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/pip install --quiet -r requirements/triton.txt
	touch $(TRITON_STAMP)

$(SCHEMATHESIS_STAMP): requirements/schemathesis.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (schemathesis is installed with it; set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet --upgrade pip
	$(SCHEMATHESIS_VENV)/bin/pip install --quiet -r requirements/schemathesis.txt
	touch $(SCHEMATHESIS_STAMP)

# ruff (lint + format check), configured in pyproject.toml; `make format` rewrites the files.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The storefront page test's Chromium (Debian packages, best effort: without them that test is skipped).
browser:
	@bash scripts/install-browser.sh

test: setup browser lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/hyperrec demo

# The same demo without the interactive wait: the endpoint stops after the example requests.
demo-ci: $(STAMP)
	$(BIN)/hyperrec demo --no-wait

bench: setup
	$(BIN)/hyperrec bench

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(SCHEMATHESIS_VENV) experiments/runs experiments/results
