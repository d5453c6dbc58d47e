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

.PHONY: setup setup-xla run test test-unit test-fast test-xla test-images benchmark lint compile clean locks engine base images run-docker

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

# Test layers (tests/conftest.py): unit, component, slow, then the XLA run. pytest-xdist hands the test files to
# TEST_WORKERS processes in the order tests/conftest.py gives them (the slow files first), a module's fixtures built
# once; most tests wait on subprocesses and services, so two workers gain on 2 cores too. The XLA tests are spread
# one by one, but those that share a training run stay together (xdist_group).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: setup  ## lint, then every test (the slow pipeline runs and the XLA tests included; the images: make test-images)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(XDIST) --durations=10 -m "not xla and not images"
	$(MAKE) test-xla

test-unit: setup  ## the unit layer: in memory, well under a minute, for the edit-test loop
	$(BIN)/python -m pytest -m "not component and not slow and not network and not xla and not images"

test-fast: setup  ## the unit and component layers: no whole-pipeline runs, PyPI, XLA or images
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not network and not xla and not images"

test-xla: setup-xla  ## training on XLA's CPU backend, two devices (the XLA environment)
	$(XLA_VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=10 -m xla tests/test_xla_smoke.py tests/test_xla.py tests/test_private_api.py

benchmark: setup  ## training throughput, the original's settings against ours (see docs/performance.md)
	$(BIN)/python benchmarks/throughput.py --json benchmarks/results/cpu.json

compile: setup  ## the Vertex AI pipeline spec for configs/banglasenti.yaml
	$(BIN)/python pipelines/compile.py

# Image locks (containers/locks/): Linux x86_64, CPython 3.11, glibc 2.36 (Debian bookworm), hashes for pip.
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_36 --generate-hashes --no-config \
	--quiet --custom-compile-command "make locks"
LOCK_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --emit-index-url)

locks: setup  ## regenerate containers/locks/*.txt from pyproject.toml (needs PyPI)
	$(BIN)/uv pip compile pyproject.toml --extra tpu -c containers/constraints.txt $(LOCK_FLAGS) $(LOCK_INDEX) \
		-o containers/locks/tpu.txt
	$(BIN)/uv pip compile pyproject.toml --extra vertex --extra serve -c containers/constraints.txt -c containers/locks/tpu.txt \
		$(LOCK_FLAGS) $(LOCK_INDEX) \
		-o containers/locks/cpu.txt
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" \
		| $(BIN)/uv pip compile - $(LOCK_FLAGS) -o containers/locks/build.txt

# Local images (docs/containers.md): podman (`make engine`), a stand-in for the pinned base where no registry
# serves it (`make base`), then every containers/*.Dockerfile as localhost/banglasenti-NAME, with the layer cache.
IMAGE_PREFIX ?= banglasenti
DOCKER_HOST ?= unix:///run/podman/podman.sock
export DOCKER_HOST
# Host files mounted into each build (read-only, never part of an image) so that pip in the build reaches the
# package registry as this machine's pip does: its configuration, the constraint file that names, CA
# certificates. Empty where the build reaches PyPI directly; the locks' hashes make the packages the same.
BUILD_MOUNTS ?= $(foreach f,/etc/pip.conf /etc/xdg/pip /etc/ssl/certs/ca-certificates.crt,$(if $(wildcard $(f)),-v $(f):$(f):ro))
# PyTorch's CPU-only wheels (e.g. https://download.pytorch.org/whl/cpu): `make locks images TORCH_INDEX=...`
# locks torch 2.9.0+cpu from that index (without the ~4.5 GB of nvidia-* CUDA wheels) and lets the builds'
# pip read it. Empty by default: the locks hold PyPI's torch 2.9.0, which brings the CUDA 12.8 libraries.
TORCH_INDEX ?=
TORCH_INDEX_CONF := $(if $(TORCH_INDEX),$(CURDIR)/$(VENV)/torch-index.pip.conf)
DOCKERFILES := $(sort $(wildcard containers/*.Dockerfile))

engine:  ## podman + runc + debootstrap from Debian, configured, its Docker API at $(DOCKER_HOST) (idempotent)
	containers/engine.sh

# STANDIN_BASE=0 where a registry serves the real base: the builds then pull it.
STANDIN_BASE ?= 1

base: engine  ## the stand-in for the images' pinned Python base, where no registry serves it (idempotent)
	$(if $(filter 1,$(STANDIN_BASE)),containers/base.sh)

images: base  ## build every containers/*.Dockerfile from the locks (hash-checked), reusing the layer cache
	$(if $(TORCH_INDEX),mkdir -p $(VENV) && printf '[global]\nextra-index-url = %s\n' "$(TORCH_INDEX)" > $(TORCH_INDEX_CONF))
	set -e; for f in $(DOCKERFILES); do name=$$(basename $$f .Dockerfile); \
		tag=localhost/$(IMAGE_PREFIX)-$$name:latest; echo "== $$tag"; start=$$(date +%s); \
		old=$$(podman image inspect --format '{{.Id}}' $$tag 2>/dev/null || true); \
		podman build --pull=missing --layers $(BUILD_MOUNTS) \
			$(if $(TORCH_INDEX),-v $(TORCH_INDEX_CONF):/root/.config/pip/pip.conf:ro) \
			--build-arg REVISION="$$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
			-f $$f -t $$tag . ; \
		echo "== $$tag built in $$(( $$(date +%s) - start )) s"; \
		if [ -n "$$old" ] && [ "$$old" != "$$(podman image inspect --format '{{.Id}}' $$tag)" ]; then \
			podman rmi "$$old" >/dev/null 2>&1 || true; fi; done
	podman images --filter reference='$(IMAGE_PREFIX)-*'

test-images: setup images  ## build the images, then run steps and the whole DAG in them (tests/test_images.py)
	$(BIN)/python -m pytest -m images tests/test_images.py

run-docker: setup images  ## `make run` with every step in its image
	$(BIN)/python pipelines/run_local.py --runner docker

clean:
	rm -rf runs pipeline.yaml .pytest_cache
