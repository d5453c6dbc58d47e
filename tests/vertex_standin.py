"""A stand-in for the Vertex AI REST API on loopback: it records each request and answers the calls that
pipelines/submit.py makes (CreatePipelineJob, GetPipelineJob, the Experiments calls on the metadata store) and
Service Usage's services:batchGet that `submit.py --check` asks.

Answers follow the REST API's JSON shapes. Request bodies are read as the service reads them: parsed into Vertex
AI's own protobuf messages (`google.cloud.aiplatform_v1`, through `json_format.ParseDict` with unknown fields
refused), the pipeline spec into KFP's `PipelineSpec`, so a misspelt field is a 400 INVALID_ARGUMENT naming it.
The worker pools of every custom job in the spec are checked here too, although Vertex AI reads them only when
the job starts: google-cloud-pipeline-components' launcher (container/v1/custom_job/remote_runner.py) hands the
job spec to the GAPIC client as a dict, whose proto-plus conversion refuses unknown fields and camelCase keys;
both conversions are applied, so the run's failure at its training step becomes a failure at submission here.

`fail` makes the next call of a route fail with a google.rpc.Status error body, as the real service does for
quota, permission and validation errors. What it lacks: IAM, quotas, capacity, running anything.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
STORE = PARENT + r"/metadataStores/default"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429}
PROJECT_NUMBER = "123456789012"
ENABLED_APIS = frozenset({"aiplatform.googleapis.com", "storage.googleapis.com", "artifactregistry.googleapis.com",
                          "cloudresourcemanager.googleapis.com", "cloudbuild.googleapis.com"})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]


class Invalid(ValueError):
    """A request body the service would refuse (400 INVALID_ARGUMENT)."""


def parse_message(message_class, data: Any, where: str) -> None:
    """Parse `data` into `message_class` (a proto-plus or protobuf class) as the service does; Invalid if it cannot."""
    from google.protobuf import json_format

    message = message_class()
    try:
        json_format.ParseDict(data, getattr(message, "_pb", message), ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise Invalid(f"Invalid JSON payload received at {where}: {str(err).splitlines()[0]}") from None


def custom_job_pools(spec: dict) -> list[tuple[str, Any]]:
    """(where, pool) of each worker pool in the spec: custom job components' defaults and tasks' constant inputs."""
    pools = []
    components = spec.get("components", {})
    for name, component in components.items():
        param = component.get("inputDefinitions", {}).get("parameters", {}).get("worker_pool_specs", {})
        pools += [(f"{name}.worker_pool_specs[{i}]", p) for i, p in enumerate(param.get("defaultValue") or [])]
    dags = {"root": spec.get("root", {}), **components}
    for dag_name, holder in dags.items():
        for task_name, task in holder.get("dag", {}).get("tasks", {}).items():
            param = task.get("inputs", {}).get("parameters", {}).get("worker_pool_specs", {})
            constant = param.get("runtimeValue", {}).get("constant") or []
            pools += [(f"{dag_name}.tasks[{task_name}].worker_pool_specs[{i}]", p) for i, p in enumerate(constant)]
    return pools


def _integral(value: Any) -> Any:
    """`value` as the launcher's json.loads reads it: the spec's numbers are Struct doubles, which the pipeline's
    (Go) backend writes without a fraction when integral, so 100.0 arrives as the int 100."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def check_pipeline_job(body: dict) -> None:
    """The CreatePipelineJob body as Vertex AI parses it, and every custom job's worker pools as the launcher does."""
    from google.cloud import aiplatform_v1
    from kfp.pipeline_spec import pipeline_spec_pb2

    parse_message(aiplatform_v1.PipelineJob, body, "pipeline_job")
    spec = body.get("pipelineSpec", {})
    parse_message(pipeline_spec_pb2.PipelineSpec, spec, "pipeline_job.pipeline_spec")
    for where, pool in custom_job_pools(spec):
        parse_message(aiplatform_v1.WorkerPoolSpec, pool, where)
        try:
            aiplatform_v1.WorkerPoolSpec(_integral(pool))  # the launcher's dict -> proto-plus conversion
        except (ValueError, TypeError, KeyError) as err:
            raise Invalid(f"custom job payload at {where}: {err}") from None


@dataclass
class VertexStandIn:
    """State of the stand-in: what it received and what it answers."""

    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # States a job reports on successive GetPipelineJob calls (the last one repeats).
    states: list[str] = field(default_factory=lambda: ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    # Route name -> (google.rpc status, message) for that route's next call: create_job, get_job, create_context,
    # get_context, add_context_children, batch_get_services.
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)
    enabled_apis: set[str] = field(default_factory=lambda: set(ENABLED_APIS))
    url: str = ""

    def created_jobs(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/pipelineJobs")]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        self.requests.append(Request(method, path, query, body))
        routes = [("create_job", "POST", PARENT + r"/pipelineJobs", self._create_job),
                  ("get_job", "GET", PARENT + r"/pipelineJobs/(?P<job>[^/:]+)", self._get_job),
                  ("get_store", "GET", STORE, lambda m, q, b: (200, {"name": path.removeprefix("/v1/")})),
                  ("create_context", "POST", STORE + r"/contexts", self._create_context),
                  ("get_context", "GET", STORE + r"/contexts/(?P<context>[^/:]+)", self._get_context),
                  ("add_context_children", "POST", STORE + r"/contexts/(?P<context>[^/:]+):addContextChildren",
                   self._add_context_children),
                  ("batch_get_services", "GET", r"/v1/projects/(?P<project>[^/]+)/services:batchGet",
                   self._batch_get_services)]
        for name, verb, pattern, answer in routes:
            if method == verb and (m := re.fullmatch(pattern, path)):
                if name in self.fail:
                    return _error(*self.fail.pop(name))
                try:
                    return answer(m, query, body)
                except Invalid as err:
                    return _error("INVALID_ARGUMENT", str(err))
        return _error("UNIMPLEMENTED", f"the stand-in does not serve {method} {path}", 501)

    def _get_job(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        job = self.jobs.get(m["job"])
        if job is None:
            return _error("NOT_FOUND", f"PipelineJob {m['job']} not found")
        polls = job.pop("_polls", 0)
        job["state"] = self.states[min(polls, len(self.states) - 1)]
        job["_polls"] = polls + 1
        # Once running, the service has made the run's context in the metadata store (Experiments use it).
        store = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default"
        job["jobDetail"] = {"pipelineRunContext": {"name": f"{store}/contexts/{m['job']}",
                                                   "schemaTitle": "system.PipelineRun"}}
        return 200, {k: v for k, v in job.items() if k != "_polls"}

    def _create_context(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.Context, body, "context")
        name = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/" \
               f"{query['contextId'][0]}"
        self.contexts[name] = {**body, "name": name}
        return 200, self.contexts[name]

    def _get_context(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        name = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/{m['context']}"
        if name in self.contexts:
            return 200, self.contexts[name]
        return _error("NOT_FOUND", f"Context {name} not found")

    def _add_context_children(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        from google.cloud import aiplatform_v1

        parse_message(aiplatform_v1.AddContextChildrenRequest, body, "add_context_children_request")
        return 200, {}

    def _create_job(self, m: re.Match, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        check_pipeline_job(body)
        job_id = query.get("pipelineJobId", ["job"])[0]
        name = f"projects/{m['project']}/locations/{m['location']}/pipelineJobs/{job_id}"
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": "2026-01-01T00:00:00Z"}
        self.jobs[job_id] = job
        return 200, job

    def _batch_get_services(self, m: re.Match, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        services = []
        for name in query.get("names", []):
            api = name.rsplit("/", 1)[-1]
            parent = f"projects/{PROJECT_NUMBER}"  # the service answers with the project's number
            services.append({"name": f"{parent}/services/{api}", "parent": parent,
                             "state": "ENABLED" if api in self.enabled_apis else "DISABLED"})
        return 200, {"services": services}


def _error(status: str, message: str, code: int | None = None) -> tuple[int, dict]:
    code = code or HTTP_STATUS[status]
    return code, {"error": {"code": code, "message": message, "status": status}}


def serve(standin: VertexStandIn) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve `standin` on a free loopback port; its `url` is set to http://127.0.0.1:PORT."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError as err:
                code, payload = _error("INVALID_ARGUMENT", f"Invalid JSON payload received. {err}")
            else:
                code, payload = standin.handle(self.command, parsed.path, parse_qs(parsed.query), body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@contextlib.contextmanager
def running() -> Iterator[VertexStandIn]:
    """A stand-in served on loopback for the duration of the block."""
    state = VertexStandIn()
    server, thread = serve(state)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
