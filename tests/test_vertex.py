"""The compiled vertex target: custom training jobs, machine profiles, job settings, CPU steps, raw-data import,
every variant's tasks configured alike, cache keys free of per-run values, resumption after a resubmission, and no
credential anywhere in the spec."""

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from banglasenti.config.schema import CONFIG_DIR, MACHINE_PROFILES, ConfigError, load_config
from banglasenti.storage.lineage import GIT_COMMIT_ENV, IMAGE_ENV, git_commit
from banglasenti.training.checkpoints import SHARED_CHECKPOINT_ENV
from pipelines.compile import compile_pipeline
from pipelines.vertex import training_key

TRAIN_STEPS = ("train-lora", "train-baseline")
CPU_STEPS = ("prepare", "base-model", "tokenize", "evaluate")
IMAGES = [
    "pipeline.cpu_image=europe-west4-docker.pkg.dev/proj/banglasenti/cpu:v1",
    "pipeline.train_image=europe-west4-docker.pkg.dev/proj/banglasenti/tpu:v1",
]


def compiled(tmp_path, overrides=(), config="banglasenti.yaml") -> dict:
    path = compile_pipeline(CONFIG_DIR / config, tmp_path / "p.yaml", "vertex", [*IMAGES, *overrides])
    return yaml.safe_load(path.read_text())


def job_inputs(spec: dict, step: str) -> dict:
    """The custom job's input parameters: the wrapper's defaults, overridden by the task's arguments."""
    defaults = {
        k: v.get("defaultValue")
        for k, v in spec["components"][f"comp-{step}"]["inputDefinitions"]["parameters"].items()
    }
    task = spec["root"]["dag"]["tasks"][step]["inputs"]["parameters"]
    given = {k: v["runtimeValue"]["constant"] for k, v in task.items() if "runtimeValue" in v}
    return {**defaults, **given}


@pytest.mark.component
def test_train_steps_are_tpu_v3_8_custom_jobs_in_the_train_image(tmp_path):
    spec = compiled(tmp_path)
    for step in TRAIN_STEPS:
        job = job_inputs(spec, step)
        [pool] = job["worker_pool_specs"]
        assert pool["machine_spec"] == {
            "machine_type": "cloud-tpu",
            "accelerator_type": "TPU_V3",
            "accelerator_count": 8,
        }
        assert pool["replica_count"] == 1
        container = pool["container_spec"]
        assert container["image_uri"] == "europe-west4-docker.pkg.dev/proj/banglasenti/tpu:v1"
        assert container["args"][-1] == step.replace("-", "_")  # the component function the job runs
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {
            "PJRT_DEVICE": "TPU",
            GIT_COMMIT_ENV: git_commit(),
            IMAGE_ENV: container["image_uri"],
            SHARED_CHECKPOINT_ENV: "1",
        }
        assert pool["disk_spec"] == {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100}
        assert job["display_name"] == f"banglasenti-lora-vs-full-{step}"
        assert (job["timeout"], job["strategy"]) == ("86400s", "STANDARD")
        assert job["service_account"] == "{{$.pipeline_service_account}}"  # the run's own account
        assert job["labels"] == {"app": "banglasenti", "step": step}
        key = training_key(load_config(CONFIG_DIR / "banglasenti.yaml", IMAGES))
        assert job["base_output_directory"] == f"{{{{$.pipeline_root}}}}/training/{step}/{key}"
        task = spec["root"]["dag"]["tasks"][step]
        assert task["retryPolicy"]["maxRetryCount"] == 1 and task["cachingOptions"] == {"enableCache": True}
        launcher = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        assert launcher["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:")
        assert "CustomJob" in launcher["args"]


@pytest.mark.component
def test_cpu_steps_run_in_the_cpu_image_with_configured_limits_and_retries(tmp_path):
    spec = compiled(
        tmp_path, ["vertex.cpu_steps.cpu_limit=4", "vertex.cpu_steps.memory_limit=16G", "vertex.cpu_steps.retries=3"]
    )
    for step in CPU_STEPS:
        container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        assert container["image"] == "europe-west4-docker.pkg.dev/proj/banglasenti/cpu:v1"
        assert container["resources"]["resourceCpuLimit"] == "4"
        assert container["resources"]["resourceMemoryLimit"] == "16G"
        assert {e["name"]: e["value"] for e in container["env"]} == {
            GIT_COMMIT_ENV: git_commit(),
            IMAGE_ENV: container["image"],
        }
        task = spec["root"]["dag"]["tasks"][step]
        assert task["retryPolicy"]["maxRetryCount"] == 3


@pytest.mark.component
@pytest.mark.parametrize("profile", ["tpu-v5e-8", "tpu-v5e-4", "gpu-a100", "cpu"])
def test_other_machine_profiles(tmp_path, profile):
    spec = compiled(tmp_path, [f"vertex.train.machine={profile}"])
    want = {k: v for k, v in MACHINE_PROFILES[profile].items() if k != "env"}
    for step in TRAIN_STEPS:
        [pool] = job_inputs(spec, step)["worker_pool_specs"]
        assert pool["machine_spec"] == want
        task_args = spec["root"]["dag"]["tasks"][step]["inputs"]["parameters"]
        # The wrapper has no topology argument: v5e passes whole worker pool specs to the job.
        assert ("worker_pool_specs" in task_args) == profile.startswith("tpu-v5e")


@pytest.mark.component
def test_job_settings_come_from_the_config(tmp_path):
    spec = compiled(
        tmp_path,
        [
            "vertex.service_account=trainer@proj.iam.gserviceaccount.com",
            "vertex.network=projects/123/global/networks/vpc",
            "vertex.reserved_ip_ranges=[vertex-range]",
            "vertex.labels={app: banglasenti, team: nlp}",
            "vertex.enable_caching=false",
            "vertex.train.strategy=SPOT",
            "vertex.train.timeout=7200s",
            "vertex.train.boot_disk_size_gb=200",
            "vertex.train.boot_disk_type=pd-standard",
            "vertex.train.retries=0",
            "vertex.train.base_output_directory=gs://ckpt-bucket/jobs/",
            "vertex.train.tensorboard=projects/123/locations/us-central1/tensorboards/456",
        ],
    )
    for step in TRAIN_STEPS:
        job = job_inputs(spec, step)
        assert job["service_account"] == "trainer@proj.iam.gserviceaccount.com"
        assert job["network"] == "projects/123/global/networks/vpc"
        assert job["reserved_ip_ranges"] == ["vertex-range"]
        assert job["labels"] == {"app": "banglasenti", "team": "nlp", "step": step}
        assert (job["strategy"], job["timeout"]) == ("SPOT", "7200s")
        assert job["tensorboard"] == "projects/123/locations/us-central1/tensorboards/456"
        assert re.fullmatch(rf"gs://ckpt-bucket/jobs/training/{step}/[0-9a-f]{{16}}", job["base_output_directory"])
        assert job["worker_pool_specs"][0]["disk_spec"] == {"boot_disk_type": "pd-standard", "boot_disk_size_gb": 200}
        task = spec["root"]["dag"]["tasks"][step]
        assert "retryPolicy" not in task and task["cachingOptions"] == {}
    assert all(t.get("cachingOptions") == {} for t in spec["root"]["dag"]["tasks"].values())


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("vertex.train.machine=tpu-v9", "vertex.train"),
        ("vertex.train.timeout=1h", "vertex.train.timeout"),
        ("vertex.labels={Team: nlp}", "vertex"),
        ("vertex.pipeline_root=/tmp/root", "vertex.pipeline_root"),
        (
            "vertex.train.profiles={x: {machine_type: a2-highgpu-1g, accelerator_type: NVIDIA_TESLA_A100, "
            "accelerator_count: 1, tpu_topology: 2x2}}",
            "vertex.train.profiles.x",
        ),
        ("vertex.train.profiles={x: {machine_type: cloud-tpu, accelerator_type: TPU_V3}}", "vertex.train.profiles.x"),
        ("vertex.reserved_ip_ranges=[r1]", "vertex"),
    ],
)
def test_bad_vertex_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf": {re.escape(key)}[.:]"):
        load_config(CONFIG_DIR / "banglasenti.yaml", [override])


@pytest.mark.component
@pytest.mark.parametrize("uri", ["gs://data-bucket/banglasenti.csv", "https://example.org/banglasenti.csv"])
def test_raw_data_is_imported_as_a_lineage_node_whatever_the_compiled_uri(tmp_path, uri):
    """The importer takes the run's data_uri parameter, so a template compiled for https:// data and submitted
    with --param data_uri=gs://... still records its raw data."""
    spec = compiled(tmp_path, [f"data.uri={uri}"])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["prepare"]["inputs"]["artifacts"]["raw_data"]["taskOutputArtifact"] == {
        "outputArtifactKey": "artifact",
        "producerTask": "importer",
    }
    importer = spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    assert importer["artifactUri"] == {"runtimeParameter": "uri"}
    assert tasks["importer"]["inputs"]["parameters"]["uri"] == {"componentInputParameter": "data_uri"}
    assert importer["typeSchema"]["schemaTitle"] == "system.Dataset"
    assert tasks["importer"]["cachingOptions"] == {"enableCache": True}


def dag_tasks(spec: dict):
    """(task name, task, component) of every task, in the root DAG and in nested ones (conditions, loops)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        for name, task in dag["tasks"].items():
            yield name, task, spec["components"][task["componentRef"]["name"]]


@pytest.mark.component
@pytest.mark.parametrize(("variant", "overrides"), [("main", ["registry.upload=true"]), ("sweep", []), ("smoke", [])])
def test_every_task_of_every_variant_is_configured_alike(tmp_path, variant, overrides):
    from kfp import compiler

    from pipelines.smoke_pipeline import build_smoke_pipeline
    from pipelines.sweep_pipeline import build_sweep_pipeline

    cfg = load_config(
        CONFIG_DIR / "banglasenti.yaml", [*IMAGES, "vertex.cpu_steps.retries=3", "vertex.train.retries=2", *overrides]
    )
    if variant == "main":
        spec = compiled(tmp_path, ["vertex.cpu_steps.retries=3", "vertex.train.retries=2", *overrides])
    else:
        build = build_sweep_pipeline if variant == "sweep" else build_smoke_pipeline
        compiler.Compiler().compile(build(cfg, "vertex"), package_path=str(tmp_path / "s.yaml"))
        spec = yaml.safe_load((tmp_path / "s.yaml").read_text())
    executors = spec["deploymentSpec"]["executors"]
    kinds = {"cpu": set(), "train": set(), "importer": set()}
    for name, task, component in dag_tasks(spec):
        if "executorLabel" not in component:
            continue  # a condition or loop: its tasks are checked themselves
        executor = executors[component["executorLabel"]]
        assert task.get("cachingOptions", {}).get("enableCache", False) is (name != "smoke"), name  # smoke: uncached
        if "importer" in executor:
            kinds["importer"].add(name)
        elif "worker_pool_specs" in component["inputDefinitions"].get("parameters", {}):
            kinds["train"].add(name)
            timeout = component["inputDefinitions"]["parameters"]["timeout"]["defaultValue"]
            if name == "smoke":  # short, and never retried: a failure is its finding
                assert "retryPolicy" not in task and timeout == cfg.vertex.train.smoke_timeout == "3600s"
            else:
                assert task["retryPolicy"]["maxRetryCount"] == 2 and timeout == cfg.vertex.train.timeout, name
            [pool] = component["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
            env = {e["name"]: e["value"] for e in pool["container_spec"]["env"]}
            assert env[GIT_COMMIT_ENV] == git_commit() and env[IMAGE_ENV] == cfg.pipeline.train_image, name
        else:
            kinds["cpu"].add(name)
            container = executor["container"]
            assert container["image"] == cfg.pipeline.cpu_image, name
            assert (container["resources"]["resourceCpuLimit"], container["resources"]["resourceMemoryLimit"]) == (
                "8",
                "32G",
            ), name
            assert {e["name"]: e["value"] for e in container["env"]} == {
                GIT_COMMIT_ENV: git_commit(),
                IMAGE_ENV: cfg.pipeline.cpu_image,
            }, name
            assert task["retryPolicy"]["maxRetryCount"] == 3, name
    expected_cpu = {"prepare", "base-model", "tokenize"}
    if variant != "smoke":
        expected_cpu |= {"evaluate", "export-model"}
        expected_cpu |= {"selected-macro-f1", "upload-model"} if variant == "main" else {"select-best-trial"}
    expected_train = {"smoke"} if variant == "smoke" else {"train-lora", "train-baseline"}
    assert kinds == {"cpu": expected_cpu, "train": expected_train, "importer": {"importer"}}


def training_task_inputs(spec: dict) -> dict:
    """What a training task's cache key is made of (kfp backend driver/cache.go: resolved input parameters and
    artifacts, output specs, command, args and image): per task, its inputs, its component and its executor."""
    out = {}
    for name, task, component in dag_tasks(spec):
        if name.startswith("train-"):
            out[name] = {
                "inputs": task["inputs"],
                "component": component,
                "executor": spec["deploymentSpec"]["executors"][component["executorLabel"]],
            }
    return out


PER_RUN = re.compile(r"\{\{\$\.pipeline_(job|task)_(uuid|name|id)\}\}|\{\{\$\.pipeline_job_create_time")


@pytest.mark.component
def test_identical_configs_give_identical_training_cache_keys(tmp_path):
    first = training_task_inputs(compiled(tmp_path / "a"))
    second = training_task_inputs(compiled(tmp_path / "b"))
    assert set(first) == {"train-lora", "train-baseline"}
    assert first == second
    assert not PER_RUN.search(json.dumps(first))
    changed = training_task_inputs(compiled(tmp_path / "c", ["train.warmup_ratio=0.1"]))
    for step in first:
        old, new = (
            t[step]["inputs"]["parameters"]["base_output_directory"]["runtimeValue"]["constant"]
            for t in (first, changed)
        )
        assert old != new and old.rsplit("/", 1)[0] == new.rsplit("/", 1)[0], step


@pytest.mark.component
def test_sweep_training_cache_keys_hold_no_per_run_value(tmp_path):
    from kfp import compiler

    from pipelines.sweep_pipeline import build_sweep_pipeline

    cfg = load_config(CONFIG_DIR / "banglasenti.yaml", IMAGES)
    keys = []
    for name in ("a.yaml", "b.yaml"):
        compiler.Compiler().compile(build_sweep_pipeline(cfg, "vertex"), package_path=str(tmp_path / name))
        keys.append(training_task_inputs(yaml.safe_load((tmp_path / name).read_text())))
    assert keys[0] == keys[1] and set(keys[0]) == {"train-lora", "train-baseline"}
    assert not PER_RUN.search(json.dumps(keys[0]))


@pytest.fixture
def vertex_api(gcs_emulator, monkeypatch):
    """The REST stand-in of Vertex AI and a pipeline-root bucket on the GCS emulator (owner: project `proj`)."""
    from google.cloud.aiplatform.utils import resource_manager_utils

    from banglasenti.storage.artifacts import gcs_client
    from tests.support.vertex_standin import running

    client = gcs_client()
    found = client.lookup_bucket("cache-bucket") or client.create_bucket("cache-bucket")
    monkeypatch.setattr(
        resource_manager_utils, "get_project_number", lambda project_id, credentials=None: str(found.project_number)
    )
    with running() as state:
        yield state


@pytest.mark.component
def test_two_submissions_send_identical_training_task_inputs(vertex_api, capfd):
    """Two submissions of the same run, as the service receives them: the training tasks' cache-relevant inputs
    are identical, so the second run reuses the first one's training (and resumes it if it failed)."""
    from pipelines.submit import main

    args = [
        "--project",
        "proj",
        "--region",
        "us-central1",
        "--staging-bucket",
        "gs://cache-bucket",
        *[a for image in IMAGES for a in ("--set", image)],
        "--api-endpoint",
        vertex_api.url,
    ]
    for _ in range(2):
        assert main(args) == 0, capfd.readouterr().err
    first, second = (training_task_inputs(r.body["pipelineSpec"]) for r in vertex_api.created_jobs())
    assert set(first) == {"train-lora", "train-baseline"} and first == second
    assert not PER_RUN.search(json.dumps(first))
    jobs = [r.query["pipelineJobId"][0] for r in vertex_api.created_jobs()]
    assert jobs[0] != jobs[1]  # two runs, one set of training inputs


def training_job_environment(spec: dict, step: str, root: Path) -> dict[str, str]:
    """The environment Vertex AI gives the custom job of `step`: the job's own variables, and AIP_CHECKPOINT_DIR
    beneath its base output directory (with the pipeline root at `root`)."""
    job = job_inputs(spec, step)
    env = {e["name"]: e["value"] for e in job["worker_pool_specs"][0]["container_spec"]["env"]}
    base = job["base_output_directory"].replace("{{$.pipeline_root}}", str(root))
    return {**env, "AIP_CHECKPOINT_DIR": f"{base}/checkpoints"}


def identity_inputs(tmp_path: Path, data: bytes = b"tokens") -> tuple[Path, Path]:
    base, tok = tmp_path / "base", tmp_path / "tok"
    for folder, content in ((base, b"weights"), (tok, data)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "file.bin").write_bytes(content)
    return base, tok


def committed_checkpoint(run_dir: Path, step: int) -> Path:
    from banglasenti.training.checkpoints import write_manifest

    ckpt = run_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"w" * 8)
    write_manifest(ckpt)
    return ckpt


def test_a_shared_checkpoint_location_keys_each_run_by_its_identity(tmp_path):
    from banglasenti.training.checkpoints import (
        RUN_IDENTITY,
        latest_valid_checkpoint,
        remove_checkpoints,
        run_checkpoint_dir,
        run_identity,
    )

    base, tok = identity_inputs(tmp_path)
    root = tmp_path / "checkpoints" / "lora"
    identity = run_identity("lora", {"train": {"epochs": 2}}, base, tok)
    first = run_checkpoint_dir(root, identity, shared=True)
    ckpt = committed_checkpoint(first, 10)
    # the resubmitted run's job: same location, same identity -> resumes there
    assert run_checkpoint_dir(root, run_identity("lora", {"train": {"epochs": 2}}, base, tok), shared=True) == first
    assert latest_valid_checkpoint(first) == ckpt
    # other data (a run with --param data_uri=...) or another setting: a location of its own, nothing refused
    _, other_tok = identity_inputs(tmp_path / "other", b"other tokens")
    for other in (
        run_identity("lora", {"train": {"epochs": 2}}, base, other_tok),
        run_identity("lora", {"train": {"epochs": 3}}, base, tok),
    ):
        location = run_checkpoint_dir(root, other, shared=True)
        assert location.parent == root and location != first and latest_valid_checkpoint(location) is None
        remove_checkpoints(location)
        assert not location.exists() and latest_valid_checkpoint(first) == ckpt
    (first / RUN_IDENTITY).write_text("{not json")  # a damaged identity: start afresh there, do not fail
    assert run_checkpoint_dir(root, identity, shared=True) == first and latest_valid_checkpoint(first) is None
    assert json.loads((first / RUN_IDENTITY).read_text()) == identity


def test_an_unshared_location_is_used_directly_until_another_run_holds_it(tmp_path, capsys):
    from banglasenti.training.checkpoints import RUN_IDENTITY, remove_checkpoints, run_checkpoint_dir, run_identity

    base, tok = identity_inputs(tmp_path)
    root = tmp_path / ".model.checkpoints"
    mine = run_identity("lora", {"lr": 1}, base, tok)
    assert run_checkpoint_dir(root, mine, shared=False) == root
    assert run_checkpoint_dir(root, mine, shared=False) == root  # a rerun of the same run resumes there
    ckpt = committed_checkpoint(root, 5)
    theirs = run_identity("lora", {"lr": 2}, base, tok)
    elsewhere = run_checkpoint_dir(root, theirs, shared=False)
    assert elsewhere.parent == root and elsewhere.name.startswith("run-")
    assert "holds checkpoints of another run (differs in config)" in capsys.readouterr().out
    committed_checkpoint(elsewhere, 3)
    remove_checkpoints(root)  # the first run finishes: the other run's location stays
    assert not ckpt.exists() and not (root / RUN_IDENTITY).exists() and (elsewhere / RUN_IDENTITY).is_file()
    assert run_checkpoint_dir(root, theirs, shared=False) == elsewhere  # and the other run resumes there


@pytest.mark.slow
def test_a_resubmitted_training_job_resumes_from_its_checkpoints(
    tmp_path, monkeypatch, fast_cfg, base_dir, tokenized_dir
):
    """A training job stopped mid-run (preempted), then the same job of a resubmitted run: it resumes from the
    first job's checkpoint; a job with other inputs in the same directory starts afresh beside it."""
    from banglasenti.training.checkpoints import Interrupted, latest_valid_checkpoint
    from banglasenti.training.runner import train_model
    from tests.conftest import sigterm_at_step

    for name, value in training_job_environment(compiled(tmp_path), "train-lora", tmp_path / "root").items():
        monkeypatch.setenv(name, value)
    ckpt_root = Path(os.environ["AIP_CHECKPOINT_DIR"]) / "lora"
    overrides = {"train.checkpoint_steps": 0, "train.epochs": 1}
    with pytest.raises(Interrupted):
        train_model(
            "lora",
            fast_cfg.with_overrides(overrides),
            base_dir,
            tokenized_dir,
            tmp_path / "a",
            callbacks=[sigterm_at_step(3)],
        )
    [run_dir] = ckpt_root.iterdir()  # a sub-location keyed by the run's identity, never the shared root
    assert run_dir.name.startswith("run-") and latest_valid_checkpoint(run_dir) == run_dir / "checkpoint-4"
    other = train_model(
        "lora",
        fast_cfg.with_overrides({**overrides, "train.lora_learning_rate": 1e-3}),
        base_dir,
        tokenized_dir,
        tmp_path / "b",
    )
    assert other["resumed_from_step"] == 0  # another run's checkpoints are not taken, nor is it refused
    assert latest_valid_checkpoint(run_dir) == run_dir / "checkpoint-4"  # and it leaves them alone
    resumed = train_model("lora", fast_cfg.with_overrides(overrides), base_dir, tokenized_dir, tmp_path / "c")
    assert resumed["resumed_from_step"] == 4 and resumed["epochs_run"] == 1
    assert not run_dir.exists()  # removed once the model is saved


@pytest.mark.component
def test_no_credential_or_secret_in_the_spec(tmp_path, monkeypatch):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE"}))
    secrets = {
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "HF_TOKEN": "hf_secretTOKEN123456",
        "GOOGLE_CLOUD_ACCESS_TOKEN": "ya29.a0secret-token-value",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    text = (compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex", IMAGES)).read_text()
    for value in [*secrets.values(), *secrets, "PRIVATE KEY", "private_key"]:
        assert value not in text
    patterns = (r"ya29\.", r"AIza[0-9A-Za-z_-]{35}", r"hf_[A-Za-z0-9]{20,}", r"(?i)\b(password|secret|token)\b\s*[:=]")
    for pattern in patterns:
        assert not re.search(pattern, text), pattern
