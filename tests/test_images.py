"""The local runner in the images: the `docker` target's spec (fast), then (marker `images`; `make test-images`
builds the images first) what each built image is, steps run in the CPU image as its user without network into a
mounted /gcs, XLA on the TPU image's CPU backend, and the whole DAG in the images through kfp's DockerRunner and
podman's Docker API, against the subprocess run.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from banglasenti.config.schema import CONFIG_DIR, load_config
from banglasenti.local.runners import LOCAL_IMAGES
from pipelines.pipeline import TASKS, build_pipeline
from tests.conftest import FAST_OVERRIDES
from tests.support.images import ROOT, local_image, podman

LOCKS = ROOT / "containers" / "locks"
images = pytest.mark.images


@pytest.mark.component
def test_docker_target_runs_each_step_in_its_image(tmp_path):
    """Every step in the image Vertex AI would run it in, the training steps on XLA's CPU backend, and no custom
    jobs (the local runner cannot run those)."""
    from kfp import compiler

    cfg = load_config(CONFIG_DIR / "local.yaml", [f"{k}={v}" for k, v in LOCAL_IMAGES.items()])
    compiler.Compiler().compile(build_pipeline(cfg, "docker"), package_path=str(tmp_path / "p.yaml"))
    spec = yaml.safe_load((tmp_path / "p.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"importer", *TASKS}
    for name in TASKS:
        container = spec["deploymentSpec"]["executors"][tasks[name]["componentRef"]["name"].replace("comp-", "exec-")][
            "container"
        ]
        train = name.startswith("train-")
        assert container["image"] == LOCAL_IMAGES["pipeline.train_image" if train else "pipeline.cpu_image"], name
        assert "pip install" not in " ".join(container["command"]), name
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert env.get("BANGLASENTI_IMAGE") == container["image"], name
        assert (env.get("PJRT_DEVICE") == "CPU") == train, name


def locked(lock: str, package: str) -> str:
    for line in (LOCKS / f"{lock}.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].split()[0].rstrip("\\").strip()
    raise AssertionError(f"{package} not in {lock}.txt")


def run_in(
    image: str,
    *args: str,
    user: str | None = None,
    env: dict[str, str] | None = None,
    volumes: dict[Path, str] | None = None,
) -> str:
    """`podman run` of the image's entrypoint (python -m) with ARGS, no network; stdout."""
    cmd = ["run", "--rm", "--network", "none"]
    cmd += ["--user", user] if user else []
    cmd += [f"--env={k}={v}" for k, v in (env or {}).items()]
    cmd += [f"--volume={host}:{inside}" for host, inside in (volumes or {}).items()]
    result = podman(*cmd, image, *args, check=False)
    assert result.returncode == 0, f"{image} {' '.join(args)}: rc {result.returncode}\n{result.stderr[-3000:]}"
    return result.stdout


def test_atomic_files_are_readable_by_other_steps(tmp_path):
    """A file written through atomic_file gets open()'s mode (0666 less the umask), not mkstemp's 0600: the TPU
    image's steps write as root, the CPU image's steps read as uid 10001."""
    from banglasenti.storage.artifacts import atomic_file

    umask = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "model.safetensors") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644


@images
@pytest.mark.parametrize(
    "name,user,workdir,cmd",
    [
        ("cpu", "10001:10001", "/home/app", "components.prepare"),
        ("tpu", "0:0", "/workspace", "components.train"),
        ("serve", "10001:10001", "/home/app", "banglasenti.serving.server"),
    ],
)
def test_image_config(name, user, workdir, cmd):
    """User, workdir, entrypoint and command as the Dockerfile says, and the commit label."""
    config = json.loads(podman("image", "inspect", local_image(name)).stdout)[0]["Config"]
    assert config["User"] == user
    assert config["WorkingDir"] == workdir
    assert config["Entrypoint"] == ["python", "-m"]
    assert config["Cmd"][0] == cmd
    assert config["Labels"]["org.opencontainers.image.revision"] not in ("", "unknown")


def layers(image: str) -> list[str]:
    return json.loads(podman("image", "inspect", image).stdout)[0]["RootFS"]["Layers"]


@images
def test_serve_image_is_the_cpu_image_plus_metadata():
    """The serving image reuses every layer of the CPU image (the venv and the project): the build cache gave
    both the same layers, and the serving image adds none of its own."""
    assert layers(local_image("serve")) == layers(local_image("cpu"))


@pytest.mark.parametrize("name", ["cpu", "tpu"])
@images
def test_image_packages(name):
    """The lock's torch and kfp, the project installed (not the source tree), pip check clean, the user's uid."""
    image = local_image(name)
    code = (
        "import importlib.metadata as m, os, json, banglasenti.data, components; print(json.dumps({'torch': "
        "m.version('torch'), 'kfp': m.version('kfp'), 'components': components.__file__, 'sample': "
        "os.path.isfile(os.path.join(os.path.dirname(banglasenti.data.__file__), 'bangla_sentiment_sample.csv')), "
        "'library': banglasenti.data.__file__, 'uid': os.getuid()}))"
    )
    seen = json.loads(podman("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", code).stdout)
    assert seen["torch"] == locked(name, "torch")
    assert seen["kfp"] == locked(name, "kfp")
    assert seen["components"].startswith("/opt/venv/lib/python3.11/site-packages/components/")
    assert seen["library"].startswith("/opt/venv/lib/python3.11/site-packages/banglasenti/data/") and seen["sample"]
    assert seen["uid"] == (10001 if name == "cpu" else 0)
    check = podman("run", "--rm", "--network", "none", "--entrypoint", "pip", image, "check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@images
def test_steps_in_cpu_image(tmp_path):
    """prepare then base-model run in the CPU image as uid 10001, offline, writing into the directory mounted
    at /gcs (as on Vertex AI); what they write belongs to that user."""
    image = local_image("cpu")
    out = tmp_path / "bucket"
    out.mkdir()
    out.chmod(0o777)
    small = [
        arg
        for key, value in FAST_OVERRIDES.items()
        if key.startswith("model.tiny.")
        for arg in ("--set", f"{key}={value}")
    ]
    prep = json.loads(
        run_in(
            image,
            "components.prepare",
            "--input",
            "sample",
            "--output-dir",
            "/gcs/bucket/prepare",
            volumes={out: "/gcs/bucket"},
        )
        .strip()
        .splitlines()[-1]
    )
    assert sum(prep["rows_out"].values()) > 600 and prep["report"] == "/gcs/bucket/prepare/report.md"
    run_in(
        image,
        "components.base_model",
        *small,
        "--train",
        "/gcs/bucket/prepare/train.parquet",
        "--output-dir",
        "/gcs/bucket/base",
        volumes={out: "/gcs/bucket"},
    )
    for path in (out / "prepare" / "train.parquet", out / "base" / "config.json"):
        assert path.is_file(), path
        assert path.stat().st_uid == 10001
    assert (out / "prepare" / "test.parquet").stat().st_size > 0


@images
def test_xla_cpu_in_tpu_image():
    """torch_xla in the TPU image computes on its CPU backend (PJRT_DEVICE=CPU; the image says TPU)."""
    image = local_image("tpu")
    env = podman("run", "--rm", "--network", "none", "--entrypoint", "printenv", image, "PJRT_DEVICE").stdout
    assert env.strip() == "TPU"
    code = (
        "import torch, torch_xla, torch_xla.core.xla_model as xm; d = xm.xla_device(); "
        "x = torch.arange(6., device=d).reshape(2, 3); print(d.type, (x @ x.T).sum().item())"
    )
    out = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "--env",
        "PJRT_DEVICE=CPU",
        "--entrypoint",
        "python",
        image,
        "-c",
        code,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["xla", "83.0"]  # [[5, 14], [14, 50]]


def run_dag(runner: str, root: Path) -> tuple[dict[str, float], str]:
    """`pipelines/run_local.py --runner RUNNER` on configs/local.yaml at the test sizes (FAST_OVERRIDES: the same
    steps and code paths, a smaller base and two epochs); its printed test macro-F1s, and stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sets = [a for k, v in FAST_OVERRIDES.items() for a in ("--set", f"{k}={v}")]
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "run_local.py"),
            "--runner",
            runner,
            "--pipeline-root",
            str(root),
            *sets,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("Test macro-F1: "))
    scores = dict(item.rsplit(" ", 1) for item in line.removeprefix("Test macro-F1: ").split(", "))
    return {name: float(value) for name, value in scores.items()}, proc.stdout


@images
def test_failed_step_is_reported_as_failed(tmp_path, capsys):
    """A step that exits non-zero in its image fails the run (kfp alone, under podman, reported it succeeded),
    and its output is shown; a step that succeeds still passes."""
    from kfp import dsl, local

    from banglasenti.local import container_runner as container_run

    image = local_image("cpu")

    @dsl.container_component
    def step(code: int):
        return dsl.ContainerSpec(
            image=image,
            command=["python", "-c"],
            args=["import sys; print('step says', sys.argv[1]); sys.exit(int(sys.argv[1]))", code],
        )

    def containers() -> set[str]:
        return set(podman("ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.ID}}").stdout.split())

    before = containers()  # a machine may hold containers of other runs
    container_run.install()
    root = tmp_path / "root"
    root.mkdir()
    local.init(
        runner=local.DockerRunner(network_mode="none", entrypoint=["/usr/bin/env"]),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    step(code=0)
    with pytest.raises(RuntimeError, match="FAILURE"):
        step(code=3)
    assert re.search(r"step says\s+3", capsys.readouterr().out)  # kfp indents the streamed log's chunks
    assert containers() - before == set(), "containers are removed after their exit status is read"


@pytest.fixture(scope="module")
def dag_runs(tmp_path_factory) -> dict[str, tuple[dict[str, float], str, Path]]:
    """The whole DAG in the images and in subprocesses: each run's test macro-F1s, stdout and run directory."""
    local_image("cpu"), local_image("tpu")
    runs = {}
    for runner in ("docker", "subprocess"):
        root = tmp_path_factory.mktemp(runner)
        scores, stdout = run_dag(runner, root)
        (run,) = [p for p in root.iterdir() if p.is_dir()]
        runs[runner] = scores, stdout, run
    return runs


@images
@pytest.mark.slow
def test_dag_in_images(dag_runs):
    """The whole DAG through kfp's DockerRunner (podman's Docker API): each step in its image as the image's user,
    the artifact root seen as /gcs/<name>/; the test macro-F1 of both models against the subprocess run."""
    scores, stdout, run = dag_runs["docker"]
    assert {p.name for p in run.iterdir() if p.is_dir()} >= set(TASKS)
    assert "/gcs/banglasenti-docker" in stdout
    assert (run / "prepare" / "train").stat().st_uid == 10001  # CPU image: uid 10001
    assert (run / "train-lora" / "model").stat().st_uid == 0  # TPU image: root
    assert (run / "export-model" / "model").stat().st_uid == 10001
    lineage = json.loads((run / "train-lora" / "executor_output.json").read_text())
    assert "localhost/banglasenti-tpu:latest" in json.dumps(lineage)
    reference, _, _ = dag_runs["subprocess"]
    print(f"test macro-F1, images: {scores}; subprocesses: {reference}")
    # torch-free figures: the same data split and the same scikit-learn give the same scores.
    assert scores["reference"] == reference["reference"]
    assert scores["majority_class"] == reference["majority_class"]


@images
@pytest.mark.slow
def test_serve_image_serves_the_dag_export(dag_runs, tmp_path):
    """The serving image with the model the in-image DAG exported (mounted read-only, AIP_* as Vertex AI sets
    them): health, then predictions equal to banglasenti.serving.predict's in the same image."""
    import httpx

    from tests.conftest import free_port
    from tests.test_serve import HEALTH, PREDICT, assert_same_predictions, sample_texts, wait_ready

    image = local_image("serve")
    model = dag_runs["docker"][2] / "export-model" / "model"
    port = free_port()
    env = {
        "AIP_STORAGE_URI": "/model",
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": HEALTH,
        "AIP_PREDICT_ROUTE": PREDICT,
    }
    name = f"banglasenti-serve-test-{port}"
    podman(
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--volume",
        f"{model}:/model:ro",
        *[f"--env={k}={v}" for k, v in env.items()],
        image,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=300)
        assert httpx.get(url + HEALTH).json()["model"]["selected"] in ("lora", "baseline")
        texts = sample_texts(50) + ["", "খুব ভালো " * 80]
        body = json.dumps({"instances": [{"text": t} for t in texts]}, ensure_ascii=False).encode()
        resp = httpx.post(url + PREDICT, content=body, headers={"content-type": "application/json"}, timeout=120)
        assert resp.status_code == 200, resp.text
        served = resp.json()["predictions"]
    finally:
        podman("stop", "-t", "5", name, check=False)
    work = tmp_path / "io"
    work.mkdir()
    work.chmod(0o777)
    (work / "in.jsonl").write_text(
        "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8"
    )
    run_in(
        image,
        "banglasenti.serving.predict",
        "--model",
        "/model",
        "--input",
        "/io/in.jsonl",
        "--output",
        "/io/out.jsonl",
        "--output-format",
        "vertex",
        volumes={model: "/model:ro", work: "/io"},
    )
    rows = [json.loads(line) for line in (work / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["instance"]["text"] for r in rows] == texts
    assert_same_predictions(served, [r["prediction"] for r in rows])
