# One command each: `make demo` and `make test` create .venv (once) and use it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch/torchvision first, pinned to the wheels this project is tested with; override for others,
# e.g. make install TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu126".
# TORCH=cpu takes PyTorch's CPU-only wheels (no CUDA libraries: a far smaller .venv on a laptop).
TORCH ?= default
ifeq ($(TORCH),cpu)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
endif
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: help install demo lint format test test-fast bench bench-gpu gpu-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

install: $(STAMP)  ## .venv with the project, its test and launcher extras (TORCH=cpu: CPU-only torch)

# The stamp is written last: after a failed step the next make runs them all again, and a .venv whose
# python has no pip (a venv creation that stopped half way) is made anew.
$(STAMP): pyproject.toml
	$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test,launchers,optuna]'
	touch $(STAMP)

demo: $(STAMP)  ## ERM vs SAM on a small synthetic problem, 2 seeds each, ending with the table
	OMP_NUM_THREADS=1 $(PY) train.py experiment=demo
	@echo "The same comparison on CIFAR-10 (ResNet-18, 200 epochs, 3 seeds, one GPU per job):"
	@echo "  $(PY) train.py -m method=erm,sam seed=0,1,2 trainer=gpu"

# The import contracts: [tool.importlinter] in pyproject.toml (docs/architecture.md, "Layers and import contracts").
lint: $(STAMP)  ## ruff check, ruff format --check, then the import contracts (lint-imports)
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(VENV)/bin/lint-imports --no-logo

format: $(STAMP)  ## ruff format: rewrites the files in place
	$(PY) -m ruff format .

test: $(STAMP)  ## the whole test suite, 2 workers
	$(PY) -m pytest -q -n 2 --durations=15

# Everything but the tests marked slow (trainings, started processes): the SAM step and engines,
# the variants, the composed configs, bad inputs. About 90 s of CPU time: about a minute on 2 idle cores.
test-fast: $(STAMP)  ## the suite without the tests marked slow
	$(PY) -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)  ## step-time benchmark on the CPU
	$(PY) bench/step_time.py

bench-gpu: $(STAMP)  ## step-time benchmark on a GPU
	$(PY) bench/step_time.py preset=gpu

# The GPU path end to end (README, GPU): training, exact resume, the step bench, DDP, sharpness, each
# step timed, within ten minutes. OUT=<folder> gets report.json; without OUT a new folder, printed.
# On a machine without CUDA the same steps run shrunk on the CPU.
OUT ?=
gpu-check: $(STAMP)  ## the GPU path end to end (OUT=<folder> for report.json)
	$(PY) bench/gpu_check.py $(if $(OUT),out=$(OUT))

clean:  ## remove outputs/, multirun/, pytest's and lint-imports' caches
	rm -rf outputs multirun .pytest_cache .import_linter_cache
