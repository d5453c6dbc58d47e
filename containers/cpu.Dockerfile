# CPU image: the prepare, base-model, tokenize and evaluate steps (config key pipeline.cpu_image).
# Build from the repository root (docs/containers.md):
#   docker build -f containers/cpu.Dockerfile --build-arg REVISION="$(git rev-parse HEAD)" -t banglasenti-cpu .
# Every Python package comes from containers/locks/cpu.txt (exact versions and hashes, `make locks`), kfp
# included, so the components run with install_kfp_package=False. Layers: the user, the locked dependencies (one
# large layer, cached until the lock changes), then the project (a small layer), then metadata only.
# containers/serve.Dockerfile repeats this file's instructions up to the project's install, so the serving image
# reuses these layers.

FROM python:3.11.14-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/app/.cache/huggingface
# A non-root user; /gcs (KFP's local path for gs:// artifacts) exists and is theirs where nothing mounts it.
RUN useradd --no-log-init --create-home --uid 10001 --user-group app \
    && mkdir /gcs && chown app:app /gcs
COPY containers/locks/build.txt containers/locks/cpu.txt /tmp/locks/
# pip and setuptools (pinned) first, so the lock's one sdist and the project build without unpinned downloads.
RUN python -m venv /opt/venv \
    && pip install --require-hashes --no-deps -r /tmp/locks/build.txt \
    && pip install --require-hashes --no-build-isolation -r /tmp/locks/cpu.txt
COPY pyproject.toml README.md /tmp/src/
COPY banglasenti/ /tmp/src/banglasenti/
COPY components/ /tmp/src/components/
COPY pipelines/ /tmp/src/pipelines/
RUN pip install --no-deps --no-build-isolation /tmp/src && pip check && rm -rf /tmp/src
WORKDIR /home/app
USER 10001:10001
# KFP and Vertex AI replace the entrypoint with the component's command; by hand: `docker run IMAGE components.prepare ...`
ENTRYPOINT ["python", "-m"]
CMD ["components.prepare", "--help"]
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="banglasenti-pipeline CPU steps" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
