"""The compiled vertex target: custom training jobs, machine profiles, job settings, CPU steps, raw-data import,
and no credential anywhere in the spec."""

import json
import re

import pytest
import yaml

from components.config import CONFIG_DIR, MACHINE_PROFILES, ConfigError, load_config
from components.lineage import GIT_COMMIT_ENV, IMAGE_ENV, git_commit
from pipelines.compile import compile_pipeline

TRAIN_STEPS = ("train-lora", "train-baseline")
CPU_STEPS = ("prepare", "base-model", "tokenize", "evaluate")
IMAGES = ["pipeline.cpu_image=europe-west4-docker.pkg.dev/proj/banglasenti/cpu:v1",
          "pipeline.train_image=europe-west4-docker.pkg.dev/proj/banglasenti/tpu:v1"]


def compiled(tmp_path, overrides=(), config="banglasenti.yaml") -> dict:
    path = compile_pipeline(CONFIG_DIR / config, tmp_path / "p.yaml", "vertex", [*IMAGES, *overrides])
    return yaml.safe_load(path.read_text())


def job_inputs(spec: dict, step: str) -> dict:
    """The custom job's input parameters: the wrapper's defaults, overridden by the task's arguments."""
    defaults = {k: v.get("defaultValue") for k, v in
                spec["components"][f"comp-{step}"]["inputDefinitions"]["parameters"].items()}
    task = spec["root"]["dag"]["tasks"][step]["inputs"]["parameters"]
    given = {k: v["runtimeValue"]["constant"] for k, v in task.items() if "runtimeValue" in v}
    return {**defaults, **given}


def test_train_steps_are_tpu_v3_8_custom_jobs_in_the_train_image(tmp_path):
    spec = compiled(tmp_path)
    for step in TRAIN_STEPS:
        job = job_inputs(spec, step)
        [pool] = job["worker_pool_specs"]
        assert pool["machine_spec"] == {"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                        "accelerator_count": 8}
        assert pool["replica_count"] == 1
        container = pool["container_spec"]
        assert container["image_uri"] == "europe-west4-docker.pkg.dev/proj/banglasenti/tpu:v1"
        assert container["args"][-1] == step.replace("-", "_")  # the component function the job runs
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"PJRT_DEVICE": "TPU", GIT_COMMIT_ENV: git_commit(), IMAGE_ENV: container["image_uri"]}
        assert pool["disk_spec"] == {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 100}
        assert job["display_name"] == f"banglasenti-lora-vs-full-{step}"
        assert (job["timeout"], job["strategy"]) == ("86400s", "STANDARD")
        assert job["service_account"] == "{{$.pipeline_service_account}}"  # the run's own account
        assert job["labels"] == {"app": "banglasenti", "step": step}
        assert job["base_output_directory"] == f"{{{{$.pipeline_root}}}}/{{{{$.pipeline_job_uuid}}}}/{step}"
        task = spec["root"]["dag"]["tasks"][step]
        assert task["retryPolicy"]["maxRetryCount"] == 1 and task["cachingOptions"] == {"enableCache": True}
        launcher = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        assert launcher["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:")
        assert "CustomJob" in launcher["args"]


def test_cpu_steps_run_in_the_cpu_image_with_configured_limits_and_retries(tmp_path):
    spec = compiled(tmp_path, ["vertex.cpu_steps.cpu_limit=4", "vertex.cpu_steps.memory_limit=16G",
                               "vertex.cpu_steps.retries=3"])
    for step in CPU_STEPS:
        container = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]
        assert container["image"] == "europe-west4-docker.pkg.dev/proj/banglasenti/cpu:v1"
        assert container["resources"]["resourceCpuLimit"] == "4"
        assert container["resources"]["resourceMemoryLimit"] == "16G"
        assert {e["name"]: e["value"] for e in container["env"]} == {GIT_COMMIT_ENV: git_commit(),
                                                                   IMAGE_ENV: container["image"]}
        task = spec["root"]["dag"]["tasks"][step]
        assert task["retryPolicy"]["maxRetryCount"] == 3


@pytest.mark.parametrize("profile", ["tpu-v5e-4", "gpu-a100", "cpu"])
def test_other_machine_profiles(tmp_path, profile):
    spec = compiled(tmp_path, [f"vertex.train.machine={profile}"])
    want = {k: v for k, v in MACHINE_PROFILES[profile].items() if k != "env"}
    for step in TRAIN_STEPS:
        [pool] = job_inputs(spec, step)["worker_pool_specs"]
        assert pool["machine_spec"] == want
        task_args = spec["root"]["dag"]["tasks"][step]["inputs"]["parameters"]
        # The wrapper has no topology argument: v5e passes whole worker pool specs to the job.
        assert ("worker_pool_specs" in task_args) == (profile == "tpu-v5e-4")


def test_job_settings_come_from_the_config(tmp_path):
    spec = compiled(tmp_path, [
        "vertex.service_account=trainer@proj.iam.gserviceaccount.com",
        "vertex.network=projects/123/global/networks/vpc", "vertex.reserved_ip_ranges=[vertex-range]",
        "vertex.labels={app: banglasenti, team: nlp}", "vertex.enable_caching=false",
        "vertex.train.strategy=SPOT", "vertex.train.timeout=7200s", "vertex.train.boot_disk_size_gb=200",
        "vertex.train.boot_disk_type=pd-standard", "vertex.train.retries=0",
        "vertex.train.base_output_directory=gs://ckpt-bucket/jobs/",
        "vertex.train.tensorboard=projects/123/locations/us-central1/tensorboards/456",
    ])
    for step in TRAIN_STEPS:
        job = job_inputs(spec, step)
        assert job["service_account"] == "trainer@proj.iam.gserviceaccount.com"
        assert job["network"] == "projects/123/global/networks/vpc"
        assert job["reserved_ip_ranges"] == ["vertex-range"]
        assert job["labels"] == {"app": "banglasenti", "team": "nlp", "step": step}
        assert (job["strategy"], job["timeout"]) == ("SPOT", "7200s")
        assert job["tensorboard"] == "projects/123/locations/us-central1/tensorboards/456"
        assert job["base_output_directory"] == f"gs://ckpt-bucket/jobs/{{{{$.pipeline_job_uuid}}}}/{step}"
        assert job["worker_pool_specs"][0]["disk_spec"] == {"boot_disk_type": "pd-standard", "boot_disk_size_gb": 200}
        task = spec["root"]["dag"]["tasks"][step]
        assert "retryPolicy" not in task and task["cachingOptions"] == {}
    assert all(t.get("cachingOptions") == {} for t in spec["root"]["dag"]["tasks"].values())


@pytest.mark.parametrize(("override", "key"), [
    ("vertex.train.machine=tpu-v9", "vertex.train"),
    ("vertex.train.timeout=1h", "vertex.train.timeout"),
    ("vertex.labels={Team: nlp}", "vertex"),
    ("vertex.pipeline_root=/tmp/root", "vertex.pipeline_root"),
    ("vertex.train.profiles={x: {machine_type: a2-highgpu-1g, accelerator_type: NVIDIA_TESLA_A100, "
     "accelerator_count: 1, tpu_topology: 2x2}}", "vertex.train.profiles.x"),
    ("vertex.train.profiles={x: {machine_type: cloud-tpu, accelerator_type: TPU_V3}}", "vertex.train.profiles.x"),
    ("vertex.reserved_ip_ranges=[r1]", "vertex"),
])
def test_bad_vertex_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf": {re.escape(key)}[.:]"):
        load_config(CONFIG_DIR / "banglasenti.yaml", [override])


def test_raw_data_on_gcs_is_imported_as_a_lineage_node(tmp_path):
    spec = compiled(tmp_path, ["data.uri=gs://data-bucket/banglasenti.csv"])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["prepare"]["inputs"]["artifacts"]["raw_data"]["taskOutputArtifact"] == {
        "outputArtifactKey": "artifact", "producerTask": "importer"}
    importer = spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    assert importer["artifactUri"] == {"runtimeParameter": "uri"}
    assert tasks["importer"]["inputs"]["parameters"]["uri"] == {"componentInputParameter": "data_uri"}
    assert importer["typeSchema"]["schemaTitle"] == "system.Dataset"
    assert "importer" not in compiled(tmp_path)["root"]["dag"]["tasks"]  # https:// data: read by prepare


def test_no_credential_or_secret_in_the_spec(tmp_path, monkeypatch):
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE"}))
    secrets = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "HF_TOKEN": "hf_secretTOKEN123456",
               "GOOGLE_CLOUD_ACCESS_TOKEN": "ya29.a0secret-token-value"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    text = (compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex", IMAGES)).read_text()
    for value in [*secrets.values(), *secrets, "PRIVATE KEY", "private_key"]:
        assert value not in text
    patterns = (r"ya29\.", r"AIza[0-9A-Za-z_-]{35}", r"hf_[A-Za-z0-9]{20,}", r"(?i)\b(password|secret|token)\b\s*[:=]")
    for pattern in patterns:
        assert not re.search(pattern, text), pattern
