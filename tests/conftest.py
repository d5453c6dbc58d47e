"""Shared fixtures: a fast config, the sample prepared and tokenized on a tiny base once per run, both models
trained once per test process.

The test layers (markers; README "Tests"):
- unit (no marker): in memory, on tiny in-memory models and tables; `make test-unit`, well under a minute;
- component: the session's chain below (the sample prepared, a tiny base, both models trained once per test
  process), the GCS emulator, Cloud Storage FUSE semantics, compiled pipelines, the steps' commands in
  subprocesses, the Vertex stand-ins; marked here for the fixtures, and by test (or module) where a pipeline
  compiles or a command starts;
- slow: the whole DAG on the local runner, the sweep, training on real data, killed and resumed runs;
- network, xla, images: PyPI, the XLA environment (`make test-xla`), the built images (`make test-images`).
"""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from banglasenti.config.schema import Config, load_config

# The fixtures several test files share (the Vertex AI REST stand-in, ...); the stand-ins themselves: tests/support/.
pytest_plugins = ["tests.support.fixtures"]

ROOT = Path(__file__).resolve().parent.parent
SHARED_VAL = ROOT.parent / "shared" / "data" / "banglasenti" / "val.csv"

# Small enough for seconds on 2 cores; same code paths as configs/local.yaml.
FAST_OVERRIDES = {
    "model.tiny.pretrain_steps": 40,
    "model.tiny.hidden_size": 64,
    "model.tiny.intermediate_size": 128,
    "train.epochs": 2,
    "train.early_stopping_patience": 0,
}


# pytest-xdist workers (make test) share the cores: each worker and the commands it starts use its share of
# threads, so that torch's OpenMP threads of two workers do not contend for the same cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )

# A test using any of these is in the component layer.
COMPONENT_FIXTURES = frozenset(
    {"prepared_dir", "base_dir", "tokenized_dir", "trained", "gcs_emulator", "gcsfuse_semantics"}
)
HEAVIER = ("slow", "network", "xla", "images")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if COMPONENT_FIXTURES & set(item.fixturenames) and not any(item.get_closest_marker(m) for m in HEAVIER):
            item.add_marker(pytest.mark.component)
    # Files with slow or network tests first: pytest-xdist hands out files in this order, so the long runs start
    # at once.
    slow_files = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("network")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def fast_cfg() -> Config:
    return load_config(ROOT / "configs" / "local.yaml", FAST_OVERRIDES)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """`build(<run's temp dir>/name)` once per test run, however many pytest-xdist workers ask for it: the first
    builds under a file lock, the others wait and reuse it (the same inputs everywhere, built once)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, above each worker's own
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            if out.exists():  # a build cut short
                shutil.rmtree(out)
            out.mkdir()
            build(out)
            done.touch()
    return out


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory, fast_cfg) -> Path:
    from banglasenti.data.preparation import run_prepare

    return built_once(
        tmp_path_factory,
        "prepared",
        lambda out: run_prepare(
            fast_cfg, out / "train.parquet", out / "val.parquet", out / "test.parquet", out / "report.md"
        ),
    )


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, fast_cfg, prepared_dir) -> Path:
    from banglasenti.models.backbone import run_base_model

    return (
        built_once(
            tmp_path_factory,
            "base",
            lambda out: run_base_model(fast_cfg, str(prepared_dir / "train.parquet"), str(out / "model")),
        )
        / "model"
    )


@pytest.fixture(scope="session")
def tokenized_dir(tmp_path_factory, fast_cfg, prepared_dir, base_dir) -> Path:
    from banglasenti.data.tokenized_splits import run_tokenize

    paths = {name: str(prepared_dir / f"{name}.parquet") for name in ("train", "val", "test")}
    return (
        built_once(
            tmp_path_factory, "tokenized", lambda out: run_tokenize(fast_cfg, paths, str(base_dir), str(out / "tok"))
        )
        / "tok"
    )


@pytest.fixture(scope="session")
def trained(tmp_path_factory, fast_cfg, base_dir, tokenized_dir) -> dict[str, tuple[Path, dict]]:
    """Both models trained once: {mode: (model_dir, summary)}."""
    from banglasenti.training.runner import train_model

    root = tmp_path_factory.mktemp("trained")
    result = {}
    for mode in ("lora", "baseline"):
        summary = train_model(mode, fast_cfg, str(base_dir), str(tokenized_dir), str(root / mode))
        result[mode] = (root / mode, summary)
    return result


@pytest.fixture
def gcsfuse_semantics(tmp_path, monkeypatch) -> Path:
    """Cloud Storage FUSE semantics under tmp_path, in this test and in every process it starts
    (banglasenti/local/gcsfuse_semantics.py): renaming a non-empty directory or a hard link there fails as on
    Vertex AI's /gcs/."""
    from banglasenti.local import gcsfuse_semantics as gcsfuse

    monkeypatch.delenv(gcsfuse.ROOTS_ENV, raising=False)
    env = gcsfuse.environment([tmp_path])
    for key in ("PYTHONPATH", gcsfuse.ROOTS_ENV):
        monkeypatch.setenv(key, env[key])
    gcsfuse.install_here()
    return tmp_path


def sigterm_at_step(step: int):
    """A Trainer callback for `train_model(..., callbacks=[...])`: it sends this process SIGTERM at the end of
    optimizer step `step` (a preempted job), after the trainer's own step-end hooks."""
    from transformers import TrainerCallback

    class SendSigterm(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                os.kill(os.getpid(), signal.SIGTERM)

    return SendSigterm()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_emulator():
    """gcp-storage-emulator on loopback; yields its URL and sets STORAGE_EMULATOR_HOST for the session."""
    port = free_port()
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    proc = subprocess.Popen(
        [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("gcp-storage-emulator did not start")
    url = f"http://127.0.0.1:{port}"
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    yield url
    if old is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old
    proc.terminate()
    proc.wait(timeout=10)
