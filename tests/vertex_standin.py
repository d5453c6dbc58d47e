"""A stand-in for the Vertex AI REST API on loopback: it records each request and answers the calls that
pipelines/submit.py makes (CreatePipelineJob, GetPipelineJob, and the Experiments calls on the metadata store).

Answers follow the REST API's JSON shapes. `fail_next` makes the next CreatePipelineJob fail with a
google.rpc.Status error body, as the real service does for quota, permission and validation errors.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
STORE = PARENT + r"/metadataStores/default"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]


@dataclass
class VertexStandIn:
    """State of the stand-in: what it received and what it answers."""

    requests: list[Request] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # States a job reports on successive GetPipelineJob calls (the last one repeats).
    states: list[str] = field(default_factory=lambda: ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    fail_next: tuple[str, str] | None = None  # (google.rpc status, message) for the next CreatePipelineJob
    url: str = ""

    def created_jobs(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/pipelineJobs")]

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        self.requests.append(Request(method, path, query, body))
        routes = [("POST", PARENT + r"/pipelineJobs", self._create_job),
                  ("GET", PARENT + r"/pipelineJobs/(?P<job>[^/:]+)", self._get_job),
                  ("GET", STORE, lambda m, q, b: (200, {"name": path.removeprefix("/v1/")})),
                  ("POST", STORE + r"/contexts", self._create_context),
                  ("GET", STORE + r"/contexts/(?P<context>[^/:]+)", self._get_context),
                  ("POST", STORE + r"/contexts/(?P<context>[^/:]+):addContextChildren", lambda m, q, b: (200, {}))]
        for verb, pattern, answer in routes:
            if method == verb and (m := re.fullmatch(pattern, path)):
                return answer(m, query, body)
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
        name = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/" \
               f"{query['contextId'][0]}"
        self.contexts[name] = {**body, "name": name}
        return 200, self.contexts[name]

    def _get_context(self, m: re.Match, query: dict, body: dict) -> tuple[int, dict]:
        name = f"projects/{m['project']}/locations/{m['location']}/metadataStores/default/contexts/{m['context']}"
        if name in self.contexts:
            return 200, self.contexts[name]
        return _error("NOT_FOUND", f"Context {name} not found")

    def _create_job(self, m: re.Match, query: dict[str, list[str]], body: dict) -> tuple[int, dict]:
        if self.fail_next:
            status, message = self.fail_next
            self.fail_next = None
            return _error(status, message)
        job_id = query.get("pipelineJobId", ["job"])[0]
        name = f"projects/{m['project']}/locations/{m['location']}/pipelineJobs/{job_id}"
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": "2026-01-01T00:00:00Z"}
        self.jobs[job_id] = job
        return 200, job


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
            body = json.loads(raw) if raw else {}
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
