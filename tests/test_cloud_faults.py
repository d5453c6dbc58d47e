"""Transient cloud faults: a loopback proxy in front of the GCS emulator answers 503, drops connections or cuts
bodies short; reads retry with backoff and succeed, or give up with one clear line."""

import http.client
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from banglasenti.config.schema import DataConfig
from banglasenti.data.preparation import prepare_data
from banglasenti.storage.artifacts import GCS_RETRY_SECONDS_ENV, InputError, download_gcs_directory, gcs_client
from tests.test_prepare import make_frame

Plan = Callable[[str, str, int], str]  # (method, path, how many times this path was seen) -> action


class FaultProxy:
    """Forwards HTTP to `upstream`, except where `plan` says: '503', 'drop' (close without answering) or
    'truncate' (headers and half the body, then close). Logs (time, method, path, action)."""

    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.plan: Plan = lambda method, path, seen: "ok"
        self.log: list[tuple[float, str, str, str]] = []
        self.seen: dict[str, int] = {}
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                key = f"{self.command} {self.path.split('?')[0]}"
                proxy.seen[key] = proxy.seen.get(key, 0) + 1
                action = proxy.plan(self.command, self.path, proxy.seen[key])
                proxy.log.append((time.monotonic(), self.command, self.path, action))
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "503":
                    payload = b'{"error": {"code": 503, "message": "Service Unavailable (injected)"}}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if action == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # clients hanging up on us are the point
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def requests_for(self, fragment: str) -> list[tuple[float, str, str, str]]:
        return [entry for entry in self.log if fragment in entry[2]]


@pytest.fixture(scope="module")
def gcs_objects(gcs_emulator):
    """A bucket with a CSV and a small 'model' directory, written straight to the emulator."""
    bucket = gcs_client().create_bucket("faulty")
    bucket.blob("data/train.csv").upload_from_string(make_frame().to_csv(index=False))
    for name in ("config.json", "model.safetensors", "sub/tokenizer.json"):
        bucket.blob(f"models/m/{name}").upload_from_string(f"content of {name}")
    return bucket


@pytest.fixture()
def proxy(gcs_emulator, gcs_objects, monkeypatch):
    fault = FaultProxy(gcs_emulator)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fault.url)
    monkeypatch.setenv(GCS_RETRY_SECONDS_ENV, "3")
    yield fault
    fault.server.shutdown()


def media_plan(actions: list[str]) -> Plan:
    """The listed actions for the first downloads of the object's bytes, then 'ok'."""

    def plan(method, path, seen):
        if "alt=media" in path and seen <= len(actions):
            return actions[seen - 1]
        return "ok"

    return plan


@pytest.mark.parametrize("actions", [["503", "503"], ["drop"], ["truncate"], ["503", "drop", "truncate"]])
def test_transient_faults_are_retried_with_backoff(proxy, tmp_path, actions):
    proxy.plan = media_plan(actions)
    prepared = prepare_data("gs://faulty/data/train.csv", DataConfig(), tmp_path)
    assert sum(prepared.stats["rows_out"].values()) == 80
    downloads = proxy.requests_for("alt=media")
    assert [a for _, _, _, a in downloads] == [*actions, "ok"]


def test_persistent_503_gives_up_with_one_line(proxy, tmp_path):
    proxy.plan = lambda method, path, seen: "503"
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        prepare_data("gs://faulty/data/train.csv", DataConfig(), tmp_path)
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert message.startswith("gs://faulty/data/train.csv: GCS still failing after retrying for 3 s (")
    assert "503" in message and "\n" not in message
    # Backoff (0.3 s doubling, jittered) within the 3 s budget: a few attempts, not a hot loop, no 120 s wait.
    assert 2 <= len(proxy.log) <= 30 and elapsed < 20, (len(proxy.log), elapsed)


def test_missing_object_is_not_retried(proxy, tmp_path):
    with pytest.raises(InputError, match="gs://faulty/data/none.csv: not found"):
        prepare_data("gs://faulty/data/none.csv", DataConfig(), tmp_path)
    assert len(proxy.requests_for("none.csv")) == 1


def test_directory_download_survives_a_failing_listing(proxy, tmp_path):
    proxy.plan = lambda method, path, seen: "503" if "/o" in path and "alt=media" not in path and seen == 1 else "ok"
    names = download_gcs_directory("gs://faulty/models/m", tmp_path)
    assert names == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    assert (tmp_path / "sub" / "tokenizer.json").read_text() == "content of sub/tokenizer.json"
    assert [a for _, _, _, a in proxy.requests_for("/o?")] == ["503", "ok"]  # the listing, retried


def test_object_names_cannot_escape_the_directory(tmp_path, monkeypatch):
    """Object names are untrusted (the emulator itself refuses '..' names, so the listing is a stand-in)."""
    from banglasenti.storage import artifacts as storage

    class Blob:
        def __init__(self, name):
            self.name = name

        def download_to_filename(self, filename, retry=None):
            Path(filename).write_text("x")

    class Client:
        def list_blobs(self, bucket, prefix, retry=None):
            return [Blob(f"{prefix}config.json"), Blob(f"{prefix}../../escape.json")]

    monkeypatch.setattr(storage, "gcs_client", Client)
    dest = tmp_path / "a" / "b"
    dest.mkdir(parents=True)
    with pytest.raises(InputError, match="object name 'models/evil/../../escape.json' points outside"):
        download_gcs_directory("gs://faulty/models/evil", dest)
    assert not any(tmp_path.rglob("escape.json"))


def test_command_line_reports_a_persistent_fault_in_one_line(proxy, tmp_path):
    proxy.plan = lambda method, path, seen: "drop"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "components.prepare",
            "--input",
            "gs://faulty/data/train.csv",
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "GCS still failing after retrying for 3 s" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


@pytest.fixture()
def flaky_http(tmp_path):
    """An HTTP server whose first GET of each file answers 503."""
    seen: dict[str, int] = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            seen[self.path] = seen.get(self.path, 0) + 1
            if seen[self.path] == 1:
                self.send_error(503)
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_https_reads_retry_a_503(flaky_http, tmp_path_factory):
    root, url, seen = flaky_http
    make_frame().to_csv(Path(root) / "data.csv", index=False)
    prepared = prepare_data(f"{url}/data.csv", DataConfig(), tmp_path_factory.mktemp("work"))
    assert sum(prepared.stats["rows_out"].values()) == 80
    assert seen["/data.csv"] == 2


def test_gcs_errors_name_what_the_failed_operation_needs():
    from google.api_core import exceptions as gexc

    from banglasenti.storage.artifacts import gcs_error

    assert str(gcs_error("gs://b/x", gexc.Forbidden("no"))).endswith("needs storage.objects.get)")
    assert str(gcs_error("gs://b/x", gexc.Forbidden("no"), writing=True)).endswith("needs storage.objects.create)")
    reset = ConnectionError("reset")
    assert str(gcs_error("gs://b/x", reset)) == "gs://b/x: cannot read from GCS: ConnectionError: reset"
    assert str(gcs_error("gs://b/x", reset, writing=True)) == "gs://b/x: cannot write to GCS: ConnectionError: reset"
