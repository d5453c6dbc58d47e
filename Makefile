# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch for this environment; the TPU image uses torch 2.9.0 + torch_xla 2.9.0 (containers/).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test test-fast lint compile clean locks

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

run: setup  ## the whole pipeline locally on the embedded sample and the tiny base model, offline
	$(BIN)/python pipelines/run_local.py

test: setup  ## lint, then every test (the slow pipeline runs included)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: setup  ## unit and component tests only
	$(BIN)/python -m pytest -m "not slow and not network"

compile: setup  ## the Vertex AI pipeline spec for configs/banglasenti.yaml
	$(BIN)/python pipelines/compile.py

# Image locks (containers/locks/): Linux x86_64, CPython 3.11, glibc 2.36 (Debian bookworm), hashes for pip.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_36 --generate-hashes --no-config \
	--quiet --custom-compile-command "make locks"

locks: setup  ## regenerate containers/locks/*.txt from pyproject.toml (needs PyPI)
	$(BIN)/uv pip compile pyproject.toml --extra tpu -c containers/constraints.txt $(LOCK_FLAGS) \
		-o containers/locks/tpu.txt
	$(BIN)/uv pip compile pyproject.toml -c containers/constraints.txt -c containers/locks/tpu.txt $(LOCK_FLAGS) \
		-o containers/locks/cpu.txt
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(BIN)/uv pip compile - $(LOCK_FLAGS) -o containers/locks/build.txt

clean:
	rm -rf runs pipeline.yaml .pytest_cache
