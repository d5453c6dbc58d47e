# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
# Every environment installs from a hash-checked lock in containers/locks/ (`make locks` writes them, `make
# upgrade-check` tries newer ones) and is built afresh when its lock changes: its stamp is the lock's hash.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
LOCK_DIR ?= containers/locks
# The dev venv (dev.txt) follows the CPU image's lock (cpu.txt) but for torch: it takes PyTorch's CPU build
# 2.13.0+cpu, not the images' torch 2.9.0 with its ~4 GB of CUDA libraries, and this is where that is set. pip
# and uv find that wheel in PyTorch's CPU index, or in a local folder of wheels where pip is given one
# (PIP_FIND_LINKS, as on this project's CI machines).
DEV_TORCH := torch==2.13.0+cpu
TORCH_LINKS ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)
FIND_TORCH := $(foreach link,$(TORCH_LINKS),--find-links $(link))
# XLA tests: the TPU image's lock (torch 2.9.0, torch_xla 2.9.0, transformers, ...) plus pytest (xla.txt);
# PJRT_DEVICE=CPU runs the XLA path on this CPU. A few GB, so the environment lives outside the checkout and is
# reused by later runs on the same machine; the tests import the checkout itself.
XLA_VENV ?= $(HOME)/.cache/banglasenti/xla-venv
# Environments read their locks from LOCK_DIR (make upgrade-check points it at new ones).
lock_stamp = $(1)/.lock-$(shell cat $(2) $(LOCK_DIR)/build.txt 2>/dev/null | sha256sum | cut -c1-16)
DEV_STAMP := $(call lock_stamp,$(VENV),$(LOCK_DIR)/dev.txt)
XLA_STAMP := $(call lock_stamp,$(XLA_VENV),$(LOCK_DIR)/xla.txt)

# A new venv at $(1) holding exactly the lock $(2): the pinned pip and setuptools first (so the lock's sdists and
# the project build without an unpinned download), then the lock, hash-checked; pip check proves it consistent.
define fresh_venv
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --require-hashes --no-deps -r $(LOCK_DIR)/build.txt
	$(1)/bin/pip install --quiet --require-hashes --no-build-isolation $(3) -r $(2)
	$(1)/bin/pip check
endef

.PHONY: help setup setup-xla run test test-unit test-fast test-xla test-images benchmark lint compile clean locks \
	upgrade-check engine base images run-docker

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 16

# The locks are order-only prerequisites: the stamp's name holds their hash, so a lock rewritten with the same
# content (make locks, git checkout) rebuilds nothing.
$(DEV_STAMP): | $(LOCK_DIR)/dev.txt $(LOCK_DIR)/build.txt
	$(call fresh_venv,$(VENV),$(LOCK_DIR)/dev.txt,$(FIND_TORCH))
	touch $@

# The project itself, editable, without dependencies (the lock has them); again when pyproject.toml changes.
$(BIN)/.project: $(DEV_STAMP) pyproject.toml
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(BIN)/.project  ## the dev venv (.venv) from containers/locks/dev.txt, and the project in it

$(XLA_STAMP): | $(LOCK_DIR)/xla.txt $(LOCK_DIR)/build.txt
	$(call fresh_venv,$(XLA_VENV),$(LOCK_DIR)/xla.txt)
	touch $@

setup-xla: $(XLA_STAMP)  ## the XLA test environment from containers/locks/xla.txt (the TPU image's versions)

run: setup  ## the whole pipeline locally on the embedded sample and the tiny base model, offline
	$(BIN)/python pipelines/run_local.py

# Test layers (tests/conftest.py): unit, component, slow, then the XLA run. pytest-xdist hands the test files to
# TEST_WORKERS processes in the order tests/conftest.py gives them (the slow files first), a module's fixtures built
# once; most tests wait on subprocesses and services, so two workers gain on 2 cores too. The XLA tests are spread
# one by one, but those that share a training run stay together (xdist_group).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup  ## ruff's lint and format checks, then mypy, on the project's own code
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint  ## lint, then every test (the slow pipeline runs and the XLA tests included; the images: make test-images)
	$(BIN)/python -m pytest $(XDIST) --durations=10 -m "not xla and not images"
	$(MAKE) test-xla

test-unit: setup  ## the unit layer: in memory, well under a minute, for the edit-test loop
	$(BIN)/python -m pytest -m "not component and not slow and not network and not xla and not images"

test-fast: setup  ## the unit and component layers: no whole-pipeline runs, PyPI, XLA or images
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not network and not xla and not images"

test-xla: setup-xla  ## training on XLA's CPU backend, two devices (the XLA environment)
	$(XLA_VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=10 -m xla tests/test_xla_smoke.py tests/test_xla.py tests/test_private_api.py \
		tests/test_locks.py

benchmark: setup  ## training throughput, the original's settings against ours (see docs/performance.md)
	$(BIN)/python benchmarks/throughput.py --json benchmarks/results/cpu.json

compile: setup  ## the Vertex AI pipeline spec for configs/banglasenti.yaml
	$(BIN)/python pipelines/compile.py

# Locks (containers/locks/): Linux x86_64, CPython 3.11, glibc 2.36 (Debian bookworm), hashes for pip. Each is
# resolved with the ones before it as constraints, so a package has one version in all of them (torch aside):
#   tpu.txt    the TPU training image: the `tpu` extra (torch 2.9.0, torch_xla[tpu] 2.9.0, libtpu)
#   cpu.txt    the CPU and serving images: the `vertex` and `serve` extras
#   dev.txt    the dev venv: cpu.txt's versions, the `dev` extra, and $(DEV_TORCH) instead of torch 2.9.0 and
#              its CUDA libraries
#   xla.txt    the XLA test environment: tpu.txt's versions and the `test` extra (pytest)
#   build.txt  setuptools and pip, installed first in every environment and image (a venv's own pip, 23.2 on
#              Python 3.11.7, refuses a locked package's extra in hash-checking mode: google-auth[pyopenssl])
# A lock keeps its versions where the ranges still allow them: LOCK_UPGRADE="--upgrade-package NAME" (or
# --upgrade) moves them; LOCK_OUT=DIR writes them elsewhere (an empty DIR resolves the newest versions allowed).
# uv comes from the dev venv; `make locks UV=uv` uses another one (where dev.txt itself cannot be installed).
LOCK_OUT ?= containers/locks
LOCK_UPGRADE ?=
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_36 --generate-hashes --no-config \
	--quiet --custom-compile-command "make locks"
LOCK_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --emit-index-url)
UV ?= $(BIN)/uv
# name==version of a lock's packages but torch and the CUDA libraries that come with PyTorch's PyPI build.
pins_but_torch = grep -E '^[A-Za-z0-9._-]+==' $(1) | cut -d' ' -f1 | grep -vE '^(torch|triton|nvidia-[a-z0-9-]+)=='

locks: $(if $(filter $(BIN)/uv,$(UV)),setup)  ## regenerate containers/locks/*.txt from pyproject.toml (needs PyPI)
	mkdir -p $(LOCK_OUT)
	$(UV) pip compile pyproject.toml --extra tpu -c containers/constraints.txt $(LOCK_FLAGS) $(LOCK_UPGRADE) $(LOCK_INDEX) \
		-o $(LOCK_OUT)/tpu.txt
	$(UV) pip compile pyproject.toml --extra vertex --extra serve -c containers/constraints.txt \
		-c $(LOCK_OUT)/tpu.txt $(LOCK_FLAGS) $(LOCK_UPGRADE) $(LOCK_INDEX) -o $(LOCK_OUT)/cpu.txt
	$(UV) pip compile pyproject.toml --extra dev --extra vertex --extra serve -c containers/constraints.txt \
		-c <($(call pins_but_torch,$(LOCK_OUT)/cpu.txt); echo "$(DEV_TORCH)") $(FIND_TORCH) \
		$(LOCK_FLAGS) $(LOCK_UPGRADE) -o $(LOCK_OUT)/dev.txt
	sed -i -E 's|-c /dev/fd/[0-9]+|-c cpu.txt (but torch), $(DEV_TORCH)|' $(LOCK_OUT)/dev.txt
	$(UV) pip compile pyproject.toml --extra tpu --extra test -c containers/constraints.txt \
		-c $(LOCK_OUT)/tpu.txt -c <($(call pins_but_torch,$(LOCK_OUT)/dev.txt)) $(LOCK_FLAGS) $(LOCK_UPGRADE) $(LOCK_INDEX) \
		-o $(LOCK_OUT)/xla.txt
	sed -i -E 's|-c /dev/fd/[0-9]+|-c dev.txt (but torch)|' $(LOCK_OUT)/xla.txt
	{ $(PYTHON) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')"; \
		echo pip; } | $(UV) pip compile - $(LOCK_FLAGS) $(LOCK_UPGRADE) -o $(LOCK_OUT)/build.txt

upgrade-check: setup  ## the newest versions the ranges allow: temporary locks, unit tests, one XLA training
	UV=$(abspath $(UV)) PYTHON=$(PYTHON) containers/upgrade_check.sh

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

clean:  ## remove runs/, pipeline.yaml and pytest's cache
	rm -rf runs pipeline.yaml .pytest_cache
