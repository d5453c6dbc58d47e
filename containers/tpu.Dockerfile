# TPU training image: the train-lora and train-baseline steps on Vertex AI TPU v3/v5e (config key
# pipeline.train_image). torch 2.9.0 + torch_xla[tpu] 2.9.0 (the only torch_xla release for torch 2.9) and
# the libtpu it pins, all from containers/locks/tpu.txt (exact versions and hashes, `make locks`).
# Build from the repository root (docs/containers.md):
#   docker build -f containers/tpu.Dockerfile --build-arg REVISION="$(git rev-parse HEAD)" -t banglasenti-tpu .
# Layers: the locked dependencies (one large layer, cached until the lock changes), then the project (small).

FROM python:3.11.14-slim-bookworm
# PJRT_DEVICE=TPU: torch_xla uses the TPU runtime (libtpu) rather than its CPU fallback.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PJRT_DEVICE=TPU
COPY containers/locks/build.txt containers/locks/tpu.txt /tmp/locks/
# pip and setuptools (pinned) first, so the lock's one sdist and the project build without unpinned downloads.
RUN python -m venv /opt/venv \
    && pip install --require-hashes --no-deps -r /tmp/locks/build.txt \
    && pip install --require-hashes --no-build-isolation -r /tmp/locks/tpu.txt
COPY pyproject.toml README.md /tmp/src/
COPY banglasenti/ /tmp/src/banglasenti/
COPY components/ /tmp/src/components/
COPY pipelines/ /tmp/src/pipelines/
RUN pip install --no-deps --no-build-isolation /tmp/src && pip check && rm -rf /tmp/src
WORKDIR /workspace
# Root on purpose: libtpu opens the TPU device files (/dev/accel*, /dev/vfio/*), which belong to root on
# TPU VMs; TPU containers run privileged and as root.
# hadolint ignore=DL3002
USER 0:0
# KFP and Vertex AI replace the entrypoint with the component's command; by hand: `docker run IMAGE components.train ...`
ENTRYPOINT ["python", "-m"]
CMD ["components.train", "--help"]
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="banglasenti-pipeline TPU training" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
