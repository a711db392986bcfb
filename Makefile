# Each target creates .venv and installs on first use, so `make test` or `make demo` alone
# does all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-gradnet bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# Static checks: lint, formatting (ruff format is the one style), types (mypy, config in
# pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

# The Hamiltonian pipeline on the default pendulum: simulate -> train -> evaluate -> plot.
demo: $(STAMP)
	test -f data/pendulum.h5 || $(BIN)/hamgrad simulate pendulum --out data/pendulum.h5
	$(BIN)/hamgrad train --name demo --overwrite
	$(BIN)/hamgrad evaluate runs/demo --horizon 1000
	$(BIN)/hamgrad plot runs/demo

# The gradient-network demo: learn a 2-D gradient field, print the test error in dB.
demo-gradnet: $(STAMP)
	$(BIN)/python -m hamgrad.demo

# The Hamiltonian benchmarks at their quick profile (BENCHMARKS.md section 5), under 5 minutes
# on 2 shared cores: the HNN protocol for GradNet-C and the HNN only (all five models take
# another ~3 minutes: drop --models for them).
bench: $(STAMP)
	$(BIN)/python scripts/bench_hamiltonian.py --quick
	$(BIN)/python scripts/bench_hnn_protocol.py --quick --models gradnet-c,hnn
	$(BIN)/python scripts/bench_long_horizon.py --quick

clean:
	rm -rf $(VENV) .pytest_cache
