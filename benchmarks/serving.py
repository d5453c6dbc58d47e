"""Serving throughput and latency: a forward pass per request against dynamic batching, side by side in one run.

    python benchmarks/serving.py --model runs/<run>/export-model/model                     # the demo export
    python benchmarks/serving.py --model runs/<run>/export-model/model --architecture base --json out.json

Each server variant is started as the serving image starts it (`python -m banglasenti.serving.server` with Vertex
AI's AIP_* variables) and driven from a bounded loopback load generator: for each scenario (requests x texts per
request x concurrency) that many keep-alive connections send their share of the requests one after another, as
coroutines on one event loop. All variants are up at once and take each scenario in turn, so load from elsewhere
falls on them alike. Variants:

    unbatched     this server with BANGLASENTI_SERVE_MAX_BATCH=1, PyTorch: every request is its own forward pass
                  (the server before dynamic batching also did that, with slower routes: --compare-with runs it)
    batched       the batching defaults (banglasenti/serving/batching.py), PyTorch
    batched-onnx  the batching defaults, on the runtime the export chose (serving.json `runtime`: ONNX Runtime
                  where a conversion passed the export's check; banglasenti/serving/onnx_runtime.py)

`--compare-with DIR` adds a variant `<DIR's name>'s server`: the server of another checkout of the project (say, the
last release: `git worktree add /tmp/previous v1.2`) started the same way from DIR (first on its sys.path), with its
own defaults; its dependencies must be importable (PYTHONPATH is passed on).

`--architecture base` serves a classifier of xlm-roberta-base's size (12 layers, hidden 768, vocabulary 250,002;
random weights, built offline) with the export's tokenizer and serving settings, instead of the export's own model;
its ONNX conversions go through the export's check on 512 held-out texts (labels: the data's).
The texts are the held-out texts of ../shared/data/banglasenti/val.csv when present, else the embedded sample's.
Reported per variant and scenario: texts/s (of the answered texts), latency p50/p95/p99 (ms; with fewer than 100
requests p99 is the slowest), failures, and the server's peak resident memory; and the runtime the export chose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "banglasenti" / "val.csv"
HEALTH, PREDICT = "/health", "/predict"
PYTORCH = {"BANGLASENTI_SERVE_RUNTIME": "pytorch"}
VARIANTS: dict[str, dict[str, str]] = {
    "unbatched": {"BANGLASENTI_SERVE_MAX_BATCH": "1", "BANGLASENTI_SERVE_BATCH_WAIT_MS": "0", **PYTORCH},
    "batched": PYTORCH,
    "batched-onnx": {},
}
CHECK_TEXTS = 512  # held-out texts the base architecture's ONNX conversions are checked on
# (requests, texts per request, concurrency): one text per request from many clients is an endpoint's usual traffic.
SCENARIOS = [(200, 1, 1), (400, 1, 16), (400, 1, 32), (400, 1, 64), (30, 32, 1), (30, 32, 4)]


def held_out(column: str = "text") -> list:
    import pandas as pd

    from banglasenti.storage.artifacts import SAMPLE_PATH

    source = SHARED_DATA if SHARED_DATA.exists() else SAMPLE_PATH
    return pd.read_csv(source)[column].tolist()


def record_runtime(directory: Path, model, tokenizer) -> dict[str, Any]:
    """The export's ONNX check (banglasenti.serving.export.served_runtime) for `model` on held-out texts, recorded in
    the directory's serving.json."""
    import pandas as pd

    from banglasenti.data.tables import clean_text
    from banglasenti.models.modeling import SERVING_INFO
    from banglasenti.serving.export import served_runtime
    from banglasenti.serving.predict import model_info, serving_config

    info = model_info(directory)
    texts, labels = held_out()[:CHECK_TEXTS], held_out("label")[:CHECK_TEXTS]  # class ids in both files
    check = directory.parent / "check-texts.parquet"
    pd.DataFrame({"text": [clean_text(str(t)) for t in texts], "label": [int(v) for v in labels]}).to_parquet(check)
    info["runtime"] = served_runtime(directory, lambda: model, tokenizer, serving_config(info), check)
    (directory / SERVING_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    return info["runtime"]


def base_architecture_export(export: Path, out: Path, seed: int = 0) -> Path:
    """A served-model directory like the export's merged/ (its tokenizer and serving.json), holding a randomly
    initialised classifier of xlm-roberta-base's size, committed by its manifest."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from banglasenti.config.schema import CLASS_NAMES
    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.models.backbone import XLMR_CONVENTIONS
    from banglasenti.serving.predict import resolve_model_dir
    from banglasenti.storage.artifacts import committed_directory

    source = resolve_model_dir(export)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        **XLMR_CONVENTIONS,
        vocab_size=250002,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
    )
    config.num_labels = len(CLASS_NAMES)
    with committed_directory(out) as directory:
        for path in source.iterdir():
            is_weights = path.suffix == ".safetensors" or path.name == "config.json"
            if path.is_file() and not is_weights and not path.name.startswith("artifact_"):
                shutil.copy2(path, directory / path.name)
        model = XLMRobertaForSequenceClassification(config).eval()
        model.save_pretrained(directory, safe_serialization=True)
        runtime = record_runtime(directory, model, load_tokenizer(source))  # the same tokenizer files
        print(f"base architecture: runtime {json.dumps(runtime)}", flush=True)
    return out


def served_runtime_record(model: Path) -> dict[str, Any]:
    """What the served directory's serving.json says serves it (banglasenti/serving/onnx_runtime.py)."""
    from banglasenti.serving.predict import model_info, resolve_model_dir

    return model_info(resolve_model_dir(model)).get("runtime") or {"name": "pytorch", "reason": "not recorded"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, env: dict[str, str], log: Path, cwd: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """`python -m banglasenti.serving.server` on a free loopback port, run from `cwd` (first on its sys.path), its
    log written to `log`."""
    port = free_port()
    environ = {**os.environ, "AIP_STORAGE_URI": str(model.resolve()), "AIP_HTTP_PORT": str(port), **env}
    for name in ("AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE"):
        environ.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "banglasenti.serving.server", "--host", "127.0.0.1"],
        env=environ,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w", encoding="utf-8"),
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise SystemExit(f"server exited with {proc.returncode} (log {log}):\n{tail}")
        try:
            if httpx.get(url + HEALTH, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server at {url} not ready after {timeout} s")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _post_all(
    host: str, port: int, bodies: list[bytes], concurrency: int
) -> tuple[list[float], list[str], float]:
    """Send every body to the predict route from `concurrency` keep-alive connections, each sending its share one
    request after another; the latencies, the failures, and the wall time from the first request to the last answer."""
    latencies: list[float] = []
    errors: list[str] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, share: list[bytes]) -> None:
        for body in share:
            head = (
                f"POST {PREDICT} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            start = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            status = int(status_line.split()[1]) if status_line else 0
            if status != 200:
                errors.append(f"{status}: {answer[:200].decode('utf-8', 'replace')}")

    # Connections are made before the clock starts.
    connections = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    shares = [bodies[i::concurrency] for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(client(reader, writer, share) for (reader, writer), share in zip(connections, shares)))
    wall = time.perf_counter() - start
    for _, writer in connections:
        writer.close()
    return latencies, errors, wall


def drive(url: str, texts: list[str], requests: int, per_request: int, concurrency: int) -> dict[str, Any]:
    """Send `requests` requests of `per_request` texts from `concurrency` clients; texts/s and latencies. The clients
    are coroutines on one event loop speaking HTTP/1.1 over asyncio streams: a load generator that costs the shared
    cores little, so the server's throughput is what is measured."""
    bodies = [
        json.dumps(
            {"instances": [{"text": texts[(i * per_request + j) % len(texts)]} for j in range(per_request)]},
            ensure_ascii=False,
        ).encode()
        for i in range(requests)
    ]
    address = urlsplit(url)
    latencies, errors, wall = asyncio.run(_post_all(address.hostname or "", address.port or 80, bodies, concurrency))
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "texts_per_second": round((requests - len(errors)) * per_request / wall, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "wall_seconds": round(wall, 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def scenario_list(value: str) -> list[tuple[int, int, int]]:
    """`400x1x32,30x32x4` as [(400, 1, 32), (30, 32, 4)]."""
    scenarios = []
    for item in value.split(","):
        parts = item.strip().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise argparse.ArgumentTypeError(f"{item!r}: expected REQUESTSxTEXTSxCONCURRENCY, e.g. 400x1x32")
        scenarios.append((int(parts[0]), int(parts[1]), int(parts[2])))
    return scenarios


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an export directory (or its merged/)")
    parser.add_argument("--architecture", choices=["export", "base"], default="export", help="which model to serve")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated server variants")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply each scenario's request count (at least 2x concurrency)"
    )
    parser.add_argument(
        "--scenarios",
        type=scenario_list,
        default=SCENARIOS,
        help="comma-separated REQUESTSxTEXTSxCONCURRENCY, e.g. 400x1x32,30x32x4 (default: the table's six)",
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        help="a checkout of the project whose server runs as one more variant (PYTHONPATH=DIR)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if args.compare_with and not (args.compare_with / "banglasenti" / "serving" / "server.py").is_file():
        raise SystemExit(f"--compare-with {args.compare_with}: no banglasenti/serving/server.py there")
    if not variants or set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: expected some of {sorted(VARIANTS)}, got {args.variants!r}")
    texts = [str(t) for t in held_out()]
    with tempfile.TemporaryDirectory(prefix="serving-benchmark-") as workdir:
        model = args.model
        if args.architecture == "base":
            model = base_architecture_export(args.model, Path(workdir) / "base")
        runtime = served_runtime_record(model)
        logs = {name: Path(workdir) / f"server-{i}.log" for i, name in enumerate([*variants, "compared"])}
        servers = {name: start_server(model, VARIANTS[name], logs[name]) for name in variants}
        if args.compare_with:
            other = args.compare_with.resolve()
            path = os.pathsep.join(p for p in (str(other), os.environ.get("PYTHONPATH")) if p)
            name = f"{other.name}'s server"
            logs[name] = logs.pop("compared")
            servers[name] = start_server(model, {"PYTHONPATH": path}, logs[name], cwd=other)
        try:
            for name, (proc, url) in servers.items():
                wait_ready(url, proc, logs[name])
                drive(url, texts, 8, 4, 2)  # warm-up: first batches, allocator, thread pools
            rows = []
            for requests, per_request, concurrency in args.scenarios:
                count = max(2 * concurrency, round(requests * args.scale))
                for name, (_, url) in servers.items():
                    result = drive(url, texts, count, per_request, concurrency)
                    rows.append(
                        {
                            "variant": name,
                            "requests": count,
                            "texts_per_request": per_request,
                            "concurrency": concurrency,
                            **result,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
            memory = {name: peak_rss_mb(proc.pid) for name, (proc, _) in servers.items()}
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=60)
    report = {
        "architecture": args.architecture,
        "model": str(args.model),
        "compared_with": str(args.compare_with) if args.compare_with else None,
        "runtime": runtime,
        "texts": SHARED_DATA.name if SHARED_DATA.exists() else "sample",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "peak_rss_mb": memory,
        "rows": rows,
    }
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table, with batched/unbatched texts/s where both ran."""
    rows = report["rows"]
    lines = [
        "| requests | texts/request | concurrency | variant | texts/s | p50 ms | p95 ms | p99 ms | errors "
        "| x unbatched |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    baseline = {
        (r["texts_per_request"], r["concurrency"]): r["texts_per_second"] for r in rows if r["variant"] == "unbatched"
    }
    for r in rows:
        base = baseline.get((r["texts_per_request"], r["concurrency"]))
        ratio = f"{r['texts_per_second'] / base:.2f}" if base else "-"
        lines.append(
            f"| {r['requests']} | {r['texts_per_request']} | {r['concurrency']} | {r['variant']} | "
            f"{r['texts_per_second']:g} | {r['p50_ms']:g} | {r['p95_ms']:g} | {r['p99_ms']:g} | {r['errors']} "
            f"| {ratio} |"
        )
    memory = ", ".join(f"{name} {mb:g} MB" for name, mb in report["peak_rss_mb"].items())
    return "\n".join(lines) + f"\n\nPeak server memory (VmHWM): {memory}\n"


if __name__ == "__main__":
    raise SystemExit(main())
