# Serving image: banglasenti.serving.server, the exported model behind HTTP on Vertex AI's custom-container contract
# (AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_STORAGE_URI; docs/serving.md).
# Build from the repository root (docs/containers.md):
#   docker build -f containers/serve.Dockerfile --build-arg REVISION="$(git rev-parse HEAD)" -t banglasenti-serve .
# Up to the project's install this is containers/cpu.Dockerfile instruction for instruction (the same lock, which
# holds the serve extra: fastapi, uvicorn), so the build cache gives both images the very same layers and the
# serving image adds only metadata.

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
ENV AIP_HTTP_PORT=8080
WORKDIR /home/app
USER 10001:10001
EXPOSE 8080
# Vertex AI sets AIP_STORAGE_URI to its copy of the model; by hand: `docker run -e AIP_STORAGE_URI=gs://... IMAGE`.
# Batching (BANGLASENTI_SERVE_MAX_BATCH, _BATCH_WAIT_MS, _MAX_QUEUE) and the runtime (BANGLASENTI_SERVE_RUNTIME) are
# left unset: the model's serving.json and the code's defaults apply unless the deployment sets them (docs/serving.md).
ENTRYPOINT ["python", "-m"]
CMD ["banglasenti.serving.server"]
ARG REVISION=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.title="banglasenti-pipeline prediction server" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
