# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch for this environment; the TPU image uses torch 2.9.0 + torch_xla 2.9.0 (containers/).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# XLA tests: torch 2.9.0 + torch_xla 2.9.0 (PJRT_DEVICE=CPU runs the XLA path on this CPU). A few GB, so the
# environment lives outside the checkout and is reused by later runs on the same machine; it holds the
# project's dependencies only (the tests import the checkout itself).
XLA_VENV ?= $(HOME)/.cache/banglasenti/xla-venv
XLA_STAMP := $(XLA_VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: setup setup-xla run test test-fast test-xla benchmark lint compile clean locks

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

$(XLA_STAMP): pyproject.toml
	$(PYTHON) -m venv $(XLA_VENV)
	$(XLA_VENV)/bin/pip install --quiet --upgrade pip
	$(XLA_VENV)/bin/pip install --quiet torch==2.9.0 torch_xla==2.9.0
	$(XLA_VENV)/bin/pip install --quiet -e ".[dev]" torch==2.9.0 torch_xla==2.9.0
	$(XLA_VENV)/bin/pip uninstall --quiet -y banglasenti-pipeline
	touch $@

setup-xla: $(XLA_STAMP)

run: setup  ## the whole pipeline locally on the embedded sample and the tiny base model, offline
	$(BIN)/python pipelines/run_local.py

test: setup  ## lint, then every test (the slow pipeline runs and the XLA tests included)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not xla"
	$(MAKE) test-xla

test-fast: setup  ## unit and component tests only
	$(BIN)/python -m pytest -m "not slow and not network and not xla"

test-xla: setup-xla  ## training on XLA's CPU backend, two devices (the XLA environment)
	$(XLA_VENV)/bin/python -m pytest -m xla tests/test_xla.py tests/test_xla_smoke.py

benchmark: setup  ## training throughput, the original's settings against ours (see docs/performance.md)
	$(BIN)/python benchmarks/throughput.py --json benchmarks/results/cpu.json

compile: setup  ## the Vertex AI pipeline spec for configs/banglasenti.yaml
	$(BIN)/python pipelines/compile.py

# Image locks (containers/locks/): Linux x86_64, CPython 3.11, glibc 2.36 (Debian bookworm), hashes for pip.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_36 --generate-hashes --no-config \
	--quiet --custom-compile-command "make locks"

locks: setup  ## regenerate containers/locks/*.txt from pyproject.toml (needs PyPI)
	$(BIN)/uv pip compile pyproject.toml --extra tpu -c containers/constraints.txt $(LOCK_FLAGS) \
		-o containers/locks/tpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra vertex --extra serve -c containers/constraints.txt -c containers/locks/tpu.txt \
		$(LOCK_FLAGS) \
		-o containers/locks/cpu.txt
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(BIN)/uv pip compile - $(LOCK_FLAGS) -o containers/locks/build.txt

clean:
	rm -rf runs pipeline.yaml .pytest_cache
