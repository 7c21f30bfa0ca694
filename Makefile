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

.PHONY: install demo lint test test-fast bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test,launchers,optuna]'
	touch $(STAMP)

demo: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) train.py experiment=demo
	@echo "The same comparison on CIFAR-10 (ResNet-18, 200 epochs, 3 seeds, one GPU per job):"
	@echo "  $(PY) train.py -m method=erm,sam seed=0,1,2 trainer=gpu"

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

# Everything but the tests marked slow (trainings, started processes): the SAM step and engines,
# the variants, the composed configs, bad inputs. About 90 s of CPU time: about a minute on 2 idle cores.
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(PY) bench/step_time.py

bench-gpu: $(STAMP)
	$(PY) bench/step_time.py preset=gpu

clean:
	rm -rf outputs multirun .pytest_cache
