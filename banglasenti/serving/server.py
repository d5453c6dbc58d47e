"""serve: the exported classifier behind HTTP, following Vertex AI's custom-container contract.

    AIP_STORAGE_URI=runs/export python -m banglasenti.serving.server          # local export directory (or its merged/)
    AIP_STORAGE_URI=gs://bucket/export/merged python -m banglasenti.serving.server --port 8081
    curl -s localhost:8080/predict -d '{"instances": [{"text": "খুব ভালো লাগলো"}]}'

Vertex AI sets AIP_HTTP_PORT (default 8080), AIP_HEALTH_ROUTE (/health), AIP_PREDICT_ROUTE (/predict) and
AIP_STORAGE_URI (its copy of the model's artifact directory). The model loads in the background: health answers
503 until it is ready, then 200 with the model's metadata (503 again should the batching worker stop). Predictions
go through banglasenti.serving.predict (same cleaning and tokenization as `python -m banglasenti.serving.predict`):

    {"instances": [{"text": "..."}, ...]}  ->  {"predictions": [{"label": ..., "label_id": ..., "scores": {...}}]}

Requests that arrive together are predicted together (banglasenti/serving/batching.py): up to
$BANGLASENTI_SERVE_MAX_BATCH texts (default 64): those that arrived while the previous batch ran, and those
arriving within $BANGLASENTI_SERVE_BATCH_WAIT_MS of the oldest (default 0). At most $BANGLASENTI_SERVE_MAX_QUEUE
texts wait (default 2048); a request beyond that gets 503 with Retry-After, and one with more texts than the queue
holds gets 400. The model's serving.json may set the same under `batching` (the config's `export.batching`); the
environment wins. The export's serving.json also names the runtime (ONNX Runtime where its conversion passed the
export's check, else PyTorch); BANGLASENTI_SERVE_RUNTIME=pytorch serves the PyTorch model regardless.

Malformed requests get a 400 with a one-line reason. Only the checked ONNX file or safetensors weights are loaded;
a directory whose artifact manifest says it was not completely written is refused (the server exits with status 2).
"""

import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banglasenti.config.schema import CLASS_NAMES
from banglasenti.serving.batching import BatchSettings, DynamicBatcher, QueueFull

LOG = logging.getLogger("banglasenti.serving.server")
DEFAULT_PORT = 8080
DEFAULT_HEALTH_ROUTE = "/health"
DEFAULT_PREDICT_ROUTE = "/predict"
MAX_BODY_BYTES = 1_500_000  # Vertex AI online prediction caps a request at 1.5 MB
MAX_INSTANCES = 512
MAX_BODY_ENV = "BANGLASENTI_SERVE_MAX_BODY_BYTES"
MAX_INSTANCES_ENV = "BANGLASENTI_SERVE_MAX_INSTANCES"
RETRY_AFTER = "1"  # seconds, on a 503 for a full queue


class BadRequest(ValueError):
    """A request the server refuses; the message is the one-line reason sent back."""


@dataclass
class LoadedModel:
    """A model ready to predict, the config its inputs are prepared with, and what to say about it."""

    model: Any
    tokenizer: Any
    cfg: Any
    info: dict[str, Any]

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        from banglasenti.serving.predict import PROBABILITY_COLUMNS, predict_texts

        frame = predict_texts(texts, self.model, self.tokenizer, self.cfg)  # called by the batcher's one worker
        warning = self.info.get("warning")
        out = []
        for row in frame.itertuples(index=False):
            record = row._asdict()
            prediction = {
                "label": record["label"],
                "label_id": int(record["label_id"]),
                "scores": {name: float(record[col]) for name, col in zip(CLASS_NAMES, PROBABILITY_COLUMNS)},
            }
            if warning:
                prediction["warning"] = warning
            out.append(prediction)
        return out


def local_model_dir(uri: str, workdir: Path) -> Path:
    """A local directory holding the model at `uri` (a gs:// prefix is downloaded into `workdir`)."""
    from banglasenti.storage.artifacts import download_gcs_directory

    if uri.startswith("gs://"):
        download_gcs_directory(uri, workdir)
        return workdir
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


def load_served_model(uri: str) -> LoadedModel:
    """Load an exported model (export directory or its merged/, local or gs://): safetensors only, committed only."""
    from banglasenti.models.modeling import ADAPTER_CONFIG
    from banglasenti.runtime.process import quiet_libraries
    from banglasenti.serving.predict import load_model, model_info, resolve_model_dir, serving_config
    from banglasenti.storage.artifacts import InputError, require_model_dir

    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="banglasenti-serve-") as workdir:
        model_dir = resolve_model_dir(local_model_dir(uri, Path(workdir)))
        require_model_dir(model_dir)  # committed, config.json, *.safetensors
        if (model_dir / ADAPTER_CONFIG).exists():
            raise InputError(f"{uri}: a LoRA adapter; serve the export's merged/ model instead")
        model, tokenizer = load_model(model_dir, None)
        info = model_info(model_dir)
    info = {**info, "labels": list(CLASS_NAMES), "storage_uri": uri}
    return LoadedModel(model, tokenizer, serving_config(info), info)


def parse_instances(body: bytes, max_instances: int) -> list[str]:
    """The texts of a `{"instances": [{"text": ...}, ...]}` request body, or BadRequest saying what is wrong."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as err:
        raise BadRequest(f"body is not JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(request, dict):
        raise BadRequest('body must be a JSON object: {"instances": [{"text": "..."}]}')
    instances = request.get("instances")
    if instances is None:
        raise BadRequest('no "instances": send {"instances": [{"text": "..."}]}')
    if "parameters" in request and not isinstance(request["parameters"], dict):
        raise BadRequest(f'"parameters" must be an object, got {json_type(request["parameters"])}')
    if not isinstance(instances, list):
        raise BadRequest('"instances" must be a list of {"text": "..."} objects')
    if not instances:
        raise BadRequest('"instances" is empty')
    if len(instances) > max_instances:
        raise BadRequest(f"too many instances: {len(instances)} (at most {max_instances} per request)")
    texts = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or "text" not in instance:
            raise BadRequest(f'instances[{i}]: expected an object with a "text" field')
        if not isinstance(instance["text"], str):
            raise BadRequest(f"instances[{i}].text: expected a string, got {json_type(instance['text'])}")
        texts.append(instance["text"])
    return texts


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


class ModelHolder:
    """The model, loaded once in a background thread, and the batcher that predicts with it; what went wrong if it
    could not be loaded. Batch settings: `settings`, else the model's serving.json (`batching`) and the environment."""

    def __init__(self, load: Callable[[], LoadedModel], settings: BatchSettings | None = None):
        self._load = load
        self.settings = settings
        self.model: LoadedModel | None = None
        self.batcher: DynamicBatcher[dict[str, Any]] | None = None
        self.error: str | None = None
        self.done = threading.Event()

    def run(self, on_failure: Callable[[], None] = lambda: None) -> None:
        from banglasenti.storage.artifacts import one_line

        try:
            model = self._load()
            settings = self.settings or BatchSettings.from_sources(model.info.get("batching"))
            self.batcher = DynamicBatcher(model.predict, settings)
            self.model = model
            LOG.info("batching: %s", settings)
            LOG.info("model loaded: %s", json.dumps(self.model.info, ensure_ascii=False))
            if self.model.info.get("warning"):
                LOG.warning("%s", self.model.info["warning"])
        except Exception as err:  # noqa: BLE001 - reported on stderr and by health; the server then stops
            self.error = f"{err.__class__.__name__}: {one_line(err)}"
            LOG.error("cannot load the model: %s", self.error)
            on_failure()
        finally:
            self.done.set()


def create_app(
    holder: ModelHolder,
    health_route: str = DEFAULT_HEALTH_ROUTE,
    predict_route: str = DEFAULT_PREDICT_ROUTE,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_instances: int = MAX_INSTANCES,
):
    """The Starlette application: health and predict on the given routes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def failure(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status)

    async def health(request: Request):
        if holder.model is None:
            state = {"status": "failed", "error": holder.error} if holder.error else {"status": "loading"}
            return JSONResponse(state, status_code=503)
        if holder.batcher is None or not holder.batcher.alive():
            return JSONResponse({"status": "failed", "error": "the batching worker has stopped"}, status_code=503)
        return JSONResponse({"status": "ready", "model": holder.model.info, "batching": holder.batcher.report()})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body_bytes):
            raise BadRequest(f"body too long: {declared} bytes (at most {max_body_bytes})")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise BadRequest(f"body too long: more than {max_body_bytes} bytes")
        return bytes(body)

    async def predict(request: Request):
        from banglasenti.storage.artifacts import one_line

        try:
            texts = parse_instances(await read_body(request), max_instances)
        except BadRequest as err:
            return failure(400, str(err))
        batcher = holder.batcher
        if holder.model is None or batcher is None:
            return failure(503, holder.error or "the model is still loading")
        if len(texts) > batcher.settings.max_queued_texts:
            return failure(
                400, f"too many instances: {len(texts)} (the queue holds {batcher.settings.max_queued_texts})"
            )
        try:
            future = batcher.submit(texts)
            return JSONResponse({"predictions": await asyncio.wrap_future(future)})
        except QueueFull as err:
            return JSONResponse({"error": f"busy: {err}"}, status_code=503, headers={"Retry-After": RETRY_AFTER})
        except Exception as err:  # noqa: BLE001 - the requests of one batch fail, the server stays up
            LOG.exception("prediction failed")
            return failure(500, f"prediction failed: {err.__class__.__name__}: {one_line(err)}")

    return Starlette(
        routes=[Route(health_route, health, methods=["GET"]), Route(predict_route, predict, methods=["POST"])]
    )


def route(name: str, default: str) -> str:
    value = os.environ.get(name) or default
    return value if value.startswith("/") else f"/{value}"


def serve(uri: str, host: str, port: int, health_route: str, predict_route: str) -> int:
    """Run the server until stopped; 2 when the model cannot be loaded."""
    import uvicorn

    holder = ModelHolder(lambda: load_served_model(uri))
    app = create_app(
        holder,
        health_route,
        predict_route,
        int(os.environ.get(MAX_BODY_ENV, MAX_BODY_BYTES)),
        int(os.environ.get(MAX_INSTANCES_ENV, MAX_INSTANCES)),
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False))

    def stop() -> None:
        server.should_exit = True

    threading.Thread(target=holder.run, args=(stop,), name="model-loader", daemon=True).start()
    server.run()
    return 2 if holder.error else 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=os.environ.get("AIP_STORAGE_URI"),
        help="export directory or its merged/ (local or gs://); default $AIP_STORAGE_URI",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default all interfaces)")
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("AIP_HTTP_PORT") or DEFAULT_PORT),
        help="port (default $AIP_HTTP_PORT or 8080)",
    )
    args = parser.parse_args(argv)
    if not args.model:
        print("error: no model: set AIP_STORAGE_URI or pass --model", file=sys.stderr)
        return 2
    try:
        BatchSettings.from_sources()  # the environment's settings, checked before the model loads
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return serve(
        args.model,
        args.host,
        args.port,
        route("AIP_HEALTH_ROUTE", DEFAULT_HEALTH_ROUTE),
        route("AIP_PREDICT_ROUTE", DEFAULT_PREDICT_ROUTE),
    )


if __name__ == "__main__":
    raise SystemExit(main())
