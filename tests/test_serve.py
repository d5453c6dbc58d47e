"""banglasenti.serving.server: the real server on loopback, real HTTP requests, an exported model."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from banglasenti.config.schema import CLASS_NAMES
from banglasenti.models.modeling import MERGED
from banglasenti.serving import onnx_runtime
from banglasenti.serving.batching import BatchSettings, DynamicBatcher, QueueFull
from banglasenti.serving.export import write_export
from banglasenti.serving.predict import model_info
from banglasenti.serving.server import ModelHolder, create_app, load_served_model, parse_instances
from banglasenti.storage.artifacts import SAMPLE_PATH, InputError
from tests.conftest import free_port

HEALTH, PREDICT = "/v1/models/banglasenti/health", "/v1/models/banglasenti:predict"  # as Vertex AI sets them
MAX_INSTANCES, MAX_BODY = 128, 65536


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, trained, base_dir, fast_cfg) -> Path:
    out = tmp_path_factory.mktemp("served") / "export"
    card = {"config": fast_cfg, "trained_on": {"source_uri": "sample", "base_model": "tiny"}}
    write_export(base_dir, trained["lora"][0], trained["baseline"][0], out, "best", card)
    return out


@pytest.fixture(scope="module")
def onnx_export_dir(tmp_path_factory, trained, base_dir, fast_cfg, prepared_dir) -> Path:
    """The same export, checked against the test split for ONNX Runtime (export.onnx, the default)."""
    out = tmp_path_factory.mktemp("served-onnx") / "export"
    card = {"config": fast_cfg, "trained_on": {"source_uri": "sample", "base_model": "tiny"}}
    write_export(base_dir, trained["lora"][0], trained["baseline"][0], out, "best", card, prepared_dir / "test.parquet")
    return out


def sample_texts(n: int) -> list[str]:
    return pd.read_csv(SAMPLE_PATH)["text"].tolist()[:n]


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 180, health: str = HEALTH) -> list[int]:
    """Poll health until 200; the statuses seen on the way."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            status = httpx.get(url + health, timeout=5).status_code
            seen.append(status)
            if status == 200:
                return seen
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready after {timeout} s; health answered {seen[-5:]}")


def start_server(model: str | Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environ = {
        **os.environ,
        "AIP_STORAGE_URI": str(model),
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH,
        "AIP_PREDICT_ROUTE": PREDICT,
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "banglasenti.serving.server", "--host", "127.0.0.1"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(export_dir):
    proc, url = start_server(
        export_dir, BANGLASENTI_SERVE_MAX_INSTANCES=str(MAX_INSTANCES), BANGLASENTI_SERVE_MAX_BODY_BYTES=str(MAX_BODY)
    )
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


def predict(url: str, texts: list[str]) -> list[dict]:
    body = json.dumps({"instances": [{"text": t} for t in texts]}, ensure_ascii=False).encode()
    resp = httpx.post(url + PREDICT, content=body, headers={"content-type": "application/json"}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]


def cli_predictions(export_dir: Path, texts: list[str], tmp_path: Path) -> list[dict]:
    """`python -m banglasenti.serving.predict` on a JSONL of instances, Vertex batch prediction's output format."""
    source, out = tmp_path / "instances.jsonl", tmp_path / "predictions.jsonl"
    source.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "banglasenti.serving.predict",
            "--model",
            str(export_dir),
            "--input",
            str(source),
            "--output",
            str(out),
            "--output-format",
            "vertex",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "warning: DEMO MODEL" in run.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["instance"]["text"] for r in rows] == texts
    return [r["prediction"] for r in rows]


def assert_same_predictions(served: list[dict], expected: list[dict]) -> None:
    assert len(served) == len(expected)
    assert [p["label"] for p in served] == [p["label"] for p in expected]
    assert [p["label_id"] for p in served] == [p["label_id"] for p in expected]
    scores = np.array([[p["scores"][c] for c in CLASS_NAMES] for p in served])
    np.testing.assert_allclose(scores, [[p["scores"][c] for c in CLASS_NAMES] for p in expected], atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)


def test_served_predictions_equal_the_predict_command(server, export_dir, tmp_path):
    texts = sample_texts(300) + ["", "   একদম   বাজে  ", "খুব ভালো " * 80]  # empty, unclean, truncated
    served = [p for start in range(0, len(texts), 100) for p in predict(server, texts[start : start + 100])]
    expected = cli_predictions(export_dir, texts, tmp_path)
    assert_same_predictions(served, expected)
    assert {p["label"] for p in served} <= set(CLASS_NAMES)
    assert all(p["warning"].startswith("DEMO MODEL") for p in served)  # trained on the sample, tiny base
    assert [p["label_id"] for p in served] == [CLASS_NAMES.index(p["label"]) for p in served]


def test_health_reports_the_served_model(server):
    resp = httpx.get(server + HEALTH)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    model = body["model"]
    assert model["selected"] in ("lora", "baseline") and set(model["val_macro_f1"]) == {"lora", "baseline"}
    assert model["selected"] == max(model["val_macro_f1"], key=lambda k: (model["val_macro_f1"][k], k == "lora"))
    assert model["demo"] is True and "embedded 694-row demo sample" in model["warning"]
    assert "tiny offline base" in model["warning"]
    assert model["labels"] == list(CLASS_NAMES) and model["tokenize"]["buckets"] == [32, 64, 128]
    assert httpx.get(server + "/health").status_code == 404  # the routes Vertex AI gave, not the defaults


BAD = [
    (b"not json", "body is not JSON"),
    (b"\xff\xfe{", "body is not JSON"),
    (b"[1, 2]", "body must be a JSON object"),
    (b"{}", 'no "instances"'),
    (b'{"instances": {"text": "x"}}', '"instances" must be a list'),
    (b'{"instances": []}', '"instances" is empty'),
    (b'{"instances": ["just a string"]}', 'instances[0]: expected an object with a "text" field'),
    (b'{"instances": [{"text": "ok"}, {"txt": "x"}]}', "instances[1]: expected an object"),
    (b'{"instances": [{"text": 5}]}', "instances[0].text: expected a string, got number"),
    (b'{"instances": [{"text": null}]}', "instances[0].text: expected a string, got null"),
    (
        json.dumps({"instances": [{"text": "a"}] * (MAX_INSTANCES + 1)}).encode(),
        f"too many instances: {MAX_INSTANCES + 1} (at most {MAX_INSTANCES} per request)",
    ),
    (json.dumps({"instances": [{"text": "ক" * MAX_BODY}]}).encode(), "body too long"),
    (b'{"instances": [{"text": "a"}], "parameters": [1]}', '"parameters" must be an object, got array'),
    (b'{"instances": [{"text": "a"}], "parameters": null}', '"parameters" must be an object, got null'),
    (b'{"instances": [{"text": "a"}], "parameters": "x"}', '"parameters" must be an object, got string'),
]


@pytest.mark.parametrize(("body", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_requests_get_400_with_a_one_line_reason(server, body, reason):
    resp = httpx.post(server + PREDICT, content=body, timeout=60)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert reason in error and "\n" not in error
    assert httpx.get(server + HEALTH).status_code == 200  # still up
    assert len(predict(server, ["ভালো"])) == 1


def test_a_long_body_without_content_length_is_refused_too(server):
    def chunks():
        yield b'{"instances": [{"text": "'
        for _ in range(MAX_BODY // 1000 + 2):
            yield b"a" * 1000
        yield b'"}]}'

    resp = httpx.post(server + PREDICT, content=chunks(), timeout=60)  # chunked transfer encoding
    assert resp.status_code == 400 and "body too long" in resp.json()["error"]
    assert httpx.get(server + HEALTH).status_code == 200


def test_concurrent_clients_get_their_own_answers(server):
    texts = sample_texts(96)
    expected = predict(server, texts)
    groups = [texts[i::12] for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda group: predict(server, group), groups * 2))
    for group, answer in zip(groups * 2, answers):
        assert_same_predictions(answer, [expected[texts.index(t)] for t in group])


def test_health_is_503_until_the_model_is_loaded(export_dir):
    import uvicorn

    gate = threading.Event()

    def load():
        gate.wait(60)
        return load_served_model(str(export_dir))

    holder = ModelHolder(load)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(holder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    threading.Thread(target=holder.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        loading = httpx.get(url + "/health")
        assert loading.status_code == 503 and loading.json() == {"status": "loading"}
        early = httpx.post(url + "/predict", json={"instances": [{"text": "ভালো"}]})
        assert early.status_code == 503 and "loading" in early.json()["error"]
        gate.set()
        assert wait_ready(url, timeout=120, health="/health")[-1] == 200
        answer = httpx.post(url + "/predict", json={"instances": [{"text": "ভালো"}, {"text": "বাজে"}]}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)


def test_an_uncommitted_or_pickled_model_is_refused(export_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(export_dir / MERGED, broken)
    (broken / "config.json").write_text("{}", encoding="utf-8")  # no longer what the manifest recorded
    proc, _ = start_server(broken)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2 and "uncommitted directory artifact" in err and str(broken) in err

    pickled = tmp_path / "pickled"
    shutil.copytree(export_dir / MERGED, pickled, ignore=shutil.ignore_patterns("*.safetensors", "artifact_*"))
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InputError, match=r"no \*\.safetensors weights"):
        load_served_model(str(pickled))
    with pytest.raises(InputError, match="no such model directory"):
        load_served_model(str(tmp_path / "absent"))


def test_no_model_is_a_one_line_error():
    env = {k: v for k, v in os.environ.items() if k != "AIP_STORAGE_URI"}
    run = subprocess.run([sys.executable, "-m", "banglasenti.serving.server"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "AIP_STORAGE_URI" in run.stderr


def test_loads_from_cloud_storage(export_dir, gcs_emulator, monkeypatch):
    from banglasenti.storage.artifacts import gcs_client

    client = gcs_client()
    bucket = client.create_bucket("serving-models")
    for path in (export_dir / MERGED).rglob("*"):
        if path.is_file():
            bucket.blob(f"run/export/{MERGED}/{path.relative_to(export_dir / MERGED)}").upload_from_filename(str(path))
    served = load_served_model(f"gs://serving-models/run/export/{MERGED}")
    local = load_served_model(str(export_dir))
    texts = sample_texts(20)
    assert_same_predictions(served.predict(texts), local.predict(texts))
    assert served.info["selected"] == local.info["selected"]
    with pytest.raises(InputError, match="no objects under this prefix"):
        load_served_model("gs://serving-models/nothing/here")


def test_parse_instances_accepts_vertex_parameters():
    assert parse_instances(b'{"instances": [{"text": "a", "id": 1}], "parameters": {}}', 4) == ["a"]


def echo_batcher(settings: BatchSettings, fail_on: str = "", gate: threading.Event | None = None):
    """A batcher whose "model" answers each text with itself upper-cased, records each batch, fails a batch holding
    `fail_on`, and waits for `gate` before each batch when given."""
    seen: list[list[str]] = []
    started = threading.Event()

    def predict(texts: list[str]) -> list[str]:
        started.set()
        if gate is not None:
            gate.wait(30)
        seen.append(list(texts))
        if fail_on and fail_on in texts:
            raise RuntimeError(f"cannot predict {fail_on!r}")
        return [t.upper() for t in texts]

    return DynamicBatcher(predict, settings), seen, started


def test_batcher_predicts_concurrent_requests_together_each_in_its_order():
    batcher, seen, _ = echo_batcher(BatchSettings(max_batch_texts=16, max_wait_ms=200))
    requests = [[f"r{i}t{j}" for j in range(1 + i % 3)] for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = list(pool.map(batcher.submit, requests))
    answers = [f.result(timeout=30) for f in futures]
    assert answers == [[t.upper() for t in texts] for texts in requests]
    assert sorted(t for batch in seen for t in batch) == sorted(t for texts in requests for t in texts)
    assert len(seen) < len(requests) and max(len(b) for b in seen) <= 16  # gathered, within the batch size
    for batch in seen:  # a request's texts stay together and in order inside a batch
        positions = {t: i for i, t in enumerate(batch)}
        for texts in requests:
            if texts[0] in positions:
                assert [positions[t] for t in texts] == list(
                    range(positions[texts[0]], positions[texts[0]] + len(texts))
                )
    batcher.stop()


def test_a_failed_batch_fails_only_its_own_requests():
    gate = threading.Event()
    batcher, seen, started = echo_batcher(BatchSettings(max_batch_texts=2, max_wait_ms=0), "boom", gate)
    first = batcher.submit(["a"])  # taken alone; the worker then waits at the gate
    assert started.wait(10)
    doomed, fine = batcher.submit(["boom", "b"]), batcher.submit(["c"])  # two batches: 2 texts fill the first
    gate.set()
    assert first.result(timeout=10) == ["A"] and fine.result(timeout=10) == ["C"]
    with pytest.raises(RuntimeError, match="cannot predict 'boom'"):
        doomed.result(timeout=10)
    assert seen == [["a"], ["boom", "b"], ["c"]]
    assert batcher.submit(["d"]).result(timeout=10) == ["D"]  # the worker goes on
    batcher.stop()


def test_a_full_queue_refuses_at_once_and_frees_as_batches_run():
    gate = threading.Event()
    batcher, _, started = echo_batcher(BatchSettings(max_batch_texts=4, max_wait_ms=0, max_queued_texts=3), gate=gate)
    running = batcher.submit(["a", "b"])
    assert started.wait(10)  # taken: no longer queued
    queued = batcher.submit(["c", "d", "e"])
    with pytest.raises(QueueFull, match="3 texts queued"):
        batcher.submit(["f"])
    gate.set()
    assert running.result(timeout=10) == ["A", "B"] and queued.result(timeout=10) == ["C", "D", "E"]
    assert batcher.submit(["f"]).result(timeout=10) == ["F"]
    batcher.stop()


def test_a_cancelled_request_is_skipped_and_the_worker_goes_on():
    """A caller that gives up (its future cancelled: a client gone, a shutdown) costs the others nothing."""
    gate = threading.Event()
    batcher, seen, started = echo_batcher(BatchSettings(max_batch_texts=8, max_wait_ms=0), gate=gate)
    running = batcher.submit(["a"])
    assert started.wait(10)
    abandoned, waiting = batcher.submit(["gone"]), batcher.submit(["b"])
    assert abandoned.cancel()
    gate.set()
    assert running.result(timeout=10) == ["A"] and waiting.result(timeout=10) == ["B"]
    assert batcher.submit(["c"]).result(timeout=10) == ["C"]
    assert ["gone"] not in seen and "gone" not in [t for batch in seen for t in batch]
    assert batcher.alive() and batcher.queued_texts() == 0
    batcher.stop()
    assert not batcher.alive()


def test_stopping_refuses_what_is_queued_and_what_comes_after():
    gate = threading.Event()
    batcher, _, started = echo_batcher(BatchSettings(max_batch_texts=1, max_wait_ms=0), gate=gate)
    running = batcher.submit(["a"])
    assert started.wait(10)
    queued = batcher.submit(["b"])
    stopper = threading.Thread(target=batcher.stop)
    stopper.start()
    gate.set()
    stopper.join(30)
    assert running.result(timeout=10) == ["A"]
    with pytest.raises(QueueFull, match="stopping"):
        queued.result(timeout=10)
    with pytest.raises(QueueFull, match="stopping"):
        batcher.submit(["c"])


@pytest.mark.parametrize(
    ("recorded", "env", "expected"),
    [
        (None, {}, BatchSettings()),
        ({"max_batch_texts": 8}, {}, BatchSettings(max_batch_texts=8)),
        ({"max_batch_texts": 8}, {"BANGLASENTI_SERVE_MAX_BATCH": "32"}, BatchSettings(max_batch_texts=32)),
        (
            None,
            {"BANGLASENTI_SERVE_BATCH_WAIT_MS": "0.5", "BANGLASENTI_SERVE_MAX_QUEUE": "10"},
            BatchSettings(max_wait_ms=0.5, max_queued_texts=10),
        ),
    ],
)
def test_batch_settings_come_from_serving_json_then_the_environment(recorded, env, expected):
    assert BatchSettings.from_sources(recorded, env) == expected


@pytest.mark.parametrize(
    ("recorded", "env", "error"),
    [
        ({"max_batch": 8}, {}, "serving.json batching.max_batch: unknown setting"),
        ([8], {}, "serving.json batching: expected an object, got list"),
        ({"max_batch_texts": "8"}, {}, "serving.json batching.max_batch_texts: expected an integer of at least 1"),
        ({"max_wait_ms": float("nan")}, {}, "serving.json batching.max_wait_ms: expected a finite number"),
        (None, {"BANGLASENTI_SERVE_MAX_BATCH": "many"}, "BANGLASENTI_SERVE_MAX_BATCH='many': expected an integer"),
        (None, {"BANGLASENTI_SERVE_MAX_BATCH": "2.5"}, "BANGLASENTI_SERVE_MAX_BATCH='2.5': expected an integer"),
        (
            None,
            {"BANGLASENTI_SERVE_MAX_BATCH": "0"},
            "BANGLASENTI_SERVE_MAX_BATCH='0': expected an integer of at least 1",
        ),
        (None, {"BANGLASENTI_SERVE_BATCH_WAIT_MS": "inf"}, "BANGLASENTI_SERVE_BATCH_WAIT_MS='inf': expected a finite"),
        (None, {"BANGLASENTI_SERVE_MAX_QUEUE": "-1"}, "BANGLASENTI_SERVE_MAX_QUEUE='-1': expected an integer"),
    ],
)
def test_bad_batch_settings_are_named(recorded, env, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        BatchSettings.from_sources(recorded, env)


def test_a_bad_batch_setting_stops_the_server_with_one_line():
    env = {**os.environ, "AIP_STORAGE_URI": "unused", "BANGLASENTI_SERVE_BATCH_WAIT_MS": "soon"}
    run = subprocess.run([sys.executable, "-m", "banglasenti.serving.server"], capture_output=True, text=True, env=env)
    assert (
        run.returncode == 2
        and run.stderr.strip()
        == "error: BANGLASENTI_SERVE_BATCH_WAIT_MS='soon': expected a finite number of at least 0"
    )


class GatedModel:
    """Stands in for a LoadedModel: answers after `gate` opens."""

    info = {"selected": "baseline"}

    def __init__(self, gate: threading.Event):
        self.gate, self.started = gate, threading.Event()

    def predict(self, texts: list[str]) -> list[dict]:
        self.started.set()
        self.gate.wait(30)
        return [{"label": "neutral", "label_id": 2, "scores": {}} for _ in texts]


def test_a_full_queue_gets_503_with_retry_after_and_the_server_recovers():
    import uvicorn

    gate = threading.Event()
    model = GatedModel(gate)
    holder = ModelHolder(lambda: model, BatchSettings(max_batch_texts=1, max_wait_ms=0, max_queued_texts=1))
    holder.run()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(holder), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    body = {"instances": [{"text": "x"}]}
    try:
        assert wait_ready(url, timeout=30, health="/health")[-1] == 200
        with ThreadPoolExecutor(max_workers=2) as pool:
            running = pool.submit(httpx.post, url + "/predict", json=body, timeout=60)
            assert model.started.wait(10)
            queued = pool.submit(httpx.post, url + "/predict", json=body, timeout=60)
            deadline = time.monotonic() + 10
            while holder.batcher.queued_texts() < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            refused = httpx.post(url + "/predict", json=body, timeout=60)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert "busy: 1 texts queued (at most 1)" in refused.json()["error"]
            gate.set()
            assert running.result().status_code == 200 and queued.result().status_code == 200
        assert httpx.post(url + "/predict", json=body, timeout=60).status_code == 200
        health = httpx.get(url + "/health").json()
        settings = {"max_batch_texts": 1, "max_wait_ms": 0, "max_queued_texts": 1}
        assert health["batching"] == {**settings, "recent_batches": 3, "mean_texts_per_batch": 1.0}
    finally:
        gate.set()
        server.should_exit = True
        thread.join(timeout=30)


def test_onnx_runtime_is_served_only_where_it_predicts_as_pytorch(onnx_export_dir, export_dir, prepared_dir):
    runtime = model_info(onnx_export_dir / MERGED)["runtime"]
    checks = runtime["checks"]
    assert set(checks) == {"int8", "fp32"} and runtime["texts"] == len(pd.read_parquet(prepared_dir / "test.parquet"))
    assert checks["fp32"]["label_agreement"] >= 0.995  # fp32 ONNX is the same function
    served = [p.name for p in (onnx_export_dir / MERGED).glob("*.onnx")]
    if onnx_runtime.passes(checks["int8"]):
        assert runtime["precision"] == "int8" and served == [onnx_runtime.INT8_FILE]
    else:  # int8 refused (the tiny model's int8 has disagreed on a few texts): fp32 served, int8 removed
        assert runtime["precision"] == "fp32" and served == [onnx_runtime.ONNX_FILE]
    assert runtime["name"] == "onnxruntime" and "Runtime: ONNX Runtime" in (onnx_export_dir / "README.md").read_text()
    assert model_info(export_dir / MERGED)["runtime"] == {
        "name": "pytorch",
        "reason": "no test split to check an ONNX conversion against",
    }

    on_onnx, on_torch = load_served_model(str(onnx_export_dir)), load_served_model(str(export_dir))
    assert isinstance(on_onnx.model, onnx_runtime.OnnxClassifier) and not isinstance(
        on_torch.model, onnx_runtime.OnnxClassifier
    )
    texts = sample_texts(200) + ["", "খুব ভালো " * 80]
    served, expected = on_onnx.predict(texts), on_torch.predict(texts)
    for text in (texts[0], texts[-1]):  # a batch of one text (the exported graph's batch is dynamic, one included)
        assert on_onnx.predict([text])[0]["label"] == on_torch.predict([text])[0]["label"]
    if runtime["precision"] == "fp32":
        assert_same_predictions(served, expected)
    else:
        agree = np.mean([a["label"] == b["label"] for a, b in zip(served, expected)])
        assert agree >= 0.97, agree


def test_the_runtime_can_be_forced_to_pytorch(onnx_export_dir, monkeypatch):
    monkeypatch.setenv("BANGLASENTI_SERVE_RUNTIME", "pytorch")
    assert not isinstance(load_served_model(str(onnx_export_dir)).model, onnx_runtime.OnnxClassifier)
    monkeypatch.setenv("BANGLASENTI_SERVE_RUNTIME", "auto")
    assert isinstance(load_served_model(str(onnx_export_dir)).model, onnx_runtime.OnnxClassifier)
    monkeypatch.setenv("BANGLASENTI_SERVE_RUNTIME", "torch")
    with pytest.raises(InputError, match=re.escape("BANGLASENTI_SERVE_RUNTIME='torch': expected one of auto, pytorch")):
        load_served_model(str(onnx_export_dir))


def test_a_conversion_that_disagrees_is_not_served(trained, prepared_dir, fast_cfg, tmp_path, monkeypatch):
    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.models.modeling import load_trained_model
    from banglasenti.serving.export import served_runtime

    model_dir = trained["baseline"][0]
    model, tokenizer = load_trained_model(model_dir, model_dir), load_tokenizer(model_dir)
    monkeypatch.setattr(onnx_runtime, "MIN_AGREEMENT", 1.01)  # no conversion can agree on more than every text
    runtime = served_runtime(tmp_path, lambda: model, tokenizer, fast_cfg, prepared_dir / "test.parquet")
    assert runtime["name"] == "pytorch" and runtime["reason"].startswith("no ONNX conversion predicts as PyTorch does")
    assert "int8: agreement" in runtime["reason"] and "fp32: agreement" in runtime["reason"]
    assert list(tmp_path.glob("*.onnx")) == []
    off = fast_cfg.model_copy(update={"export": fast_cfg.export.model_copy(update={"onnx": False})})

    def not_loaded():
        raise AssertionError("the model is loaded only to be converted")

    assert served_runtime(tmp_path, not_loaded, tokenizer, off, prepared_dir / "test.parquet") == {
        "name": "pytorch",
        "reason": "export.onnx is false",
    }


def test_a_conversion_that_fails_leaves_pytorch_serving_and_says_why(
    trained, prepared_dir, fast_cfg, tmp_path, monkeypatch
):
    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.models.modeling import load_trained_model
    from banglasenti.serving.export import served_runtime

    def broken_quantizer(source, dest):
        dest.write_bytes(b"half written")
        raise RuntimeError("quantization failed\nwith details")

    model_dir = trained["baseline"][0]
    monkeypatch.setattr(onnx_runtime, "quantize_int8", broken_quantizer)
    runtime = served_runtime(
        tmp_path,
        lambda: load_trained_model(model_dir, model_dir),
        load_tokenizer(model_dir),
        fast_cfg,
        prepared_dir / "test.parquet",
    )
    assert runtime == {
        "name": "pytorch",
        "reason": "the ONNX conversion failed: RuntimeError: quantization failed with details",
    }
    assert list(tmp_path.glob("*.onnx")) == []


def test_export_batching_settings_reach_serving_json_and_the_server(fast_cfg):
    from banglasenti.serving.export import selection_facts

    batching = fast_cfg.export.batching.model_copy(update={"max_batch_texts": 16, "max_wait_ms": 1.5})
    cfg = fast_cfg.model_copy(update={"export": fast_cfg.export.model_copy(update={"batching": batching})})
    _, info = selection_facts({"config": cfg}, "best", "lora", "r", {"lora": 0.5}, 0.0)
    assert info["batching"] == {"max_batch_texts": 16, "max_wait_ms": 1.5}
    assert BatchSettings.from_sources(info["batching"], {}) == BatchSettings(max_batch_texts=16, max_wait_ms=1.5)
    _, default = selection_facts({"config": fast_cfg}, "best", "lora", "r", {"lora": 0.5}, 0.0)
    assert "batching" not in default


def test_a_request_larger_than_the_queue_is_a_400_and_a_stopped_worker_fails_health():
    from starlette.testclient import TestClient

    model = GatedModel(threading.Event())
    model.gate.set()
    holder = ModelHolder(lambda: model, BatchSettings(max_batch_texts=1, max_queued_texts=2))
    holder.run()
    client = TestClient(create_app(holder))
    too_many = client.post("/predict", json={"instances": [{"text": "x"}] * 3})
    assert too_many.status_code == 400 and too_many.json() == {"error": "too many instances: 3 (the queue holds 2)"}
    assert client.post("/predict", json={"instances": [{"text": "x"}] * 2}).status_code == 200
    assert client.get("/health").status_code == 200
    holder.batcher.stop()
    assert client.get("/health").status_code == 503
    assert client.get("/health").json() == {"status": "failed", "error": "the batching worker has stopped"}


def test_packing_is_used_where_it_computes_fewer_positions():
    from banglasenti.config.schema import TokenizeConfig
    from banglasenti.serving.predict import packing_pays

    def table(tokens: list[int], bucket: int) -> pd.DataFrame:
        return pd.DataFrame({"num_tokens": tokens, "length": [bucket] * len(tokens)})

    tokenize = TokenizeConfig()  # rows of 128 tokens, buckets 32/64/128
    assert not packing_pays(table([20], 32), tokenize)  # one request's text: a 32-token bucket, not a 128-token row
    assert not packing_pays(table([20] * 4, 32), tokenize)  # 128 positions either way
    assert packing_pays(table([20] * 64, 32), tokenize)  # at least 10 rows of 128 against 64 buckets of 32
    assert not packing_pays(table([20] * 64, 32), tokenize.model_copy(update={"packing": False}))
    assert not packing_pays(table([], 32), tokenize)


def test_onnx_batches_are_cut_to_their_longest_text_and_answered_in_order():
    """Each run gets one bucket's texts, padded only to the longest of its batch; logits land on their own rows."""

    class RecordingSession:
        def __init__(self):
            self.shapes: list[tuple[int, int]] = []

        def run(self, names, feed):
            ids, mask = feed["input_ids"], feed["attention_mask"]
            assert (mask.sum(axis=1) > 0).all() and ((ids == PAD) == (mask == 0)).all()
            self.shapes.append(ids.shape)
            return [np.stack([mask.sum(axis=1), ids[:, 0], np.zeros(len(ids))], axis=1).astype(np.float32)]

    PAD = 1
    tokens, buckets = [5, 30, 3, 40, 7, 33], [32, 32, 32, 64, 32, 64]
    table = pd.DataFrame(
        {
            "input_ids": [np.asarray([100 + i] * n + [PAD] * (b - n)) for i, (n, b) in enumerate(zip(tokens, buckets))],
            "attention_mask": [np.asarray([1] * n + [0] * (b - n)) for n, b in zip(tokens, buckets)],
            "length": buckets,
            "num_tokens": tokens,
        }
    )
    classifier = object.__new__(onnx_runtime.OnnxClassifier)
    classifier.session = session = RecordingSession()
    logits = classifier.table_logits(table, batch_size=2, pad_token_id=PAD)
    assert logits[:, 0].tolist() == tokens and logits[:, 1].tolist() == [100 + i for i in range(6)]
    assert session.shapes == [(2, 5), (2, 30), (2, 40)]  # bucket 32 sorted: 3,5 | 7,30; bucket 64: 33,40
