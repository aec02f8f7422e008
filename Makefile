# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench-quick notebooks clean

venv: $(STAMP)

# torch first and pinned: the CPU build of 2.13.0 lies on this machine's disk, a looser pin
# would download several GB of CUDA wheels.
$(STAMP): pyproject.toml setup.py native/pc_kernels.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[data,bench,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m neurocodec.demo

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider

bench-quick: $(STAMP)
	$(VENV)/bin/neurocodec bench all --quick

notebooks: $(STAMP)
	$(PY) notebooks/build.py --execute

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache neurocodec/codecs/pc/_native*.so
