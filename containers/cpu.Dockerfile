# CPU image: the prepare, base-model, tokenize and evaluate steps (config key pipeline.cpu_image).
# Build from the repository root (docs/containers.md):
#   docker build -f containers/cpu.Dockerfile --build-arg REVISION="$(git rev-parse HEAD)" -t banglasenti-cpu .
# Every Python package comes from containers/locks/cpu.txt (exact versions and hashes, `make locks`), kfp
# included, so the components run with install_kfp_package=False.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY containers/locks/build.txt containers/locks/cpu.txt /tmp/locks/
# setuptools (pinned) first, so the one sdist in the lock and the project build without unpinned downloads.
RUN pip install --require-hashes --no-deps -r /tmp/locks/build.txt \
    && pip install --require-hashes --no-build-isolation -r /tmp/locks/cpu.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY components/ components/
COPY pipelines/ pipelines/
RUN pip install --no-deps --no-build-isolation . && pip check

FROM python:3.11.14-slim-bookworm
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="banglasenti-pipeline CPU steps" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A non-root user; /gcs (KFP's local path for gs:// artifacts) exists and is theirs where nothing mounts it.
RUN useradd --no-log-init --create-home --uid 10001 --user-group app \
    && mkdir /gcs && chown app:app /gcs
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/app/.cache/huggingface
WORKDIR /home/app
USER 10001:10001
# KFP and Vertex AI replace the entrypoint with the component's command; by hand: `docker run IMAGE components.prepare ...`
ENTRYPOINT ["python", "-m"]
CMD ["components.prepare", "--help"]
