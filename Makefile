# `make run` and `make test` each create .venv, install initlab with pinned torch, and run.
PY ?= python3
# Where pip finds torch; e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU build.
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	# mup: the peer oracle of tests/test_parameterize_mup.py; its declared torchvision dependency
	# does not import beside the torch wheel and mup never imports it, so it goes in without deps.
	$(BIN)/pip install -q --no-deps -c constraints.txt mup==1.0.0
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/initlab compare

test: $(STAMP) lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
