"""pipelines/submit.py against a local stand-in of the Vertex AI REST API and the GCS emulator."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from banglasenti.config.schema import CONFIG_DIR
from banglasenti.storage.artifacts import gcs_client
from pipelines.compile import compile_pipeline
from pipelines.submit import main

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "submit-bucket"
CPU = "us-central1-docker.pkg.dev/proj/banglasenti/cpu:v1"
TPU = "us-central1-docker.pkg.dev/proj/banglasenti/tpu:v1"
SA = "banglasenti-runner@proj-id.iam.gserviceaccount.com"
BASE = [
    "--project",
    "proj",
    "--region",
    "us-central1",
    "--staging-bucket",
    f"gs://{BUCKET}",
    "--set",
    f"pipeline.cpu_image={CPU}",
    "--set",
    f"pipeline.train_image={TPU}",
    "--service-account",
    SA,
]


@pytest.fixture
def bucket(gcs_emulator, monkeypatch):
    """The staging bucket on the emulator, owned by project `proj`.

    Before creating a run, the SDK asks Resource Manager which project owns the pipeline-root bucket; Resource
    Manager has no endpoint setting to point at a stand-in, so its answer is given here.
    """
    from google.cloud.aiplatform.utils import resource_manager_utils

    client = gcs_client()
    found = client.lookup_bucket(BUCKET) or client.create_bucket(BUCKET)
    owner = str(found.project_number)
    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda project_id, credentials=None: owner)
    return BUCKET


def run_main(capfd, *args) -> tuple[int, str, str]:
    code = main([*BASE, *args])
    out, err = capfd.readouterr()
    return code, out, err


def test_dry_run_prints_the_complete_request_and_creates_nothing(standin, bucket, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipelines" / "submit.py"),
            *BASE,
            "--network",
            "projects/123/global/networks/vpc",
            "--label",
            "team=nlp",
            "--param",
            "epochs=3",
            "--param",
            "lora_target_modules=[query, value]",
            "--no-cache",
            "--experiment",
            "lora-vs-full",
            "--job-id",
            "run-1",
            "--api-endpoint",
            standin.url,
            "--serviceusage-endpoint",
            standin.url,
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == "check: no problem found"
    plan = json.loads(run.stdout)
    request = plan["create_pipeline_job"]
    assert (request["parent"], request["pipelineJobId"]) == ("projects/proj/locations/us-central1", "run-1")
    job = request["pipelineJob"]
    assert job["serviceAccount"] == SA and job["network"] == "projects/123/global/networks/vpc"
    assert job["labels"] == {"app": "banglasenti", "team": "nlp"}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"gs://{BUCKET}/pipeline-root"
    assert job["runtimeConfig"]["parameterValues"] == {"epochs": 3, "lora_target_modules": ["query", "value"]}
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {"prepare", "train-lora", "train-baseline", "evaluate"} <= set(tasks)
    assert all(t["cachingOptions"] == {"enableCache": False} for t in tasks.values())  # --no-cache
    assert plan["experiment"] == "lora-vs-full" and plan["upload"] is None
    # Only reads: Service Usage was asked which APIs are enabled; nothing was created.
    assert [(r.method, r.path) for r in standin.requests] == [("GET", "/v1/projects/proj/services:batchGet")]


def test_submit_sends_the_pipeline_and_logs_it_to_an_experiment(standin, bucket, capfd, tmp_path):
    code, out, err = run_main(
        capfd,
        "--service-account",
        SA,
        "--label",
        "team=nlp",
        "--param",
        "lora_r=8",
        "--param",
        "data_uri=gs://data/banglasenti.csv",
        "--experiment",
        "lora-vs-full",
        "--api-endpoint",
        standin.url,
        "--output",
        str(tmp_path / "sent.yaml"),
    )
    assert code == 0, err
    [create] = standin.created_jobs()
    assert create.path == "/v1/projects/proj/locations/us-central1/pipelineJobs"
    job = create.body
    assert job["serviceAccount"] == SA and job["labels"] == {"app": "banglasenti", "team": "nlp"}
    assert job["runtimeConfig"] == {
        "gcsOutputDirectory": f"gs://{BUCKET}/pipeline-root",
        "parameterValues": {"lora_r": 8, "data_uri": "gs://data/banglasenti.csv"},
    }
    sent = yaml.safe_load((tmp_path / "sent.yaml").read_text())
    assert job["pipelineSpec"]["root"] == json.loads(json.dumps(sent["root"]))
    assert "importer" in job["pipelineSpec"]["root"]["dag"]["tasks"]  # the gs:// data is a lineage node
    pools = job["pipelineSpec"]["components"]["comp-train-lora"]["inputDefinitions"]["parameters"]
    [pool] = pools["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"]["accelerator_type"] == "TPU_V3" and pool["container_spec"]["image_uri"] == TPU
    # Experiments: the experiment's context is made, then the run's context becomes its child.
    experiment = "projects/proj/locations/us-central1/metadataStores/default/contexts/lora-vs-full"
    assert standin.contexts[experiment]["schemaTitle"] == "system.Experiment"
    [link] = [r for r in standin.requests if r.path.endswith(":addContextChildren")]
    assert link.path == f"/v1/{experiment}:addContextChildren"
    assert link.body["childContexts"] == [
        f"projects/proj/locations/us-central1/metadataStores/default/contexts/{create.query['pipelineJobId'][0]}"
    ]
    assert f"submitted: projects/proj/locations/us-central1/pipelineJobs/{create.query['pipelineJobId'][0]}" in out


def test_wait_follows_the_run_to_its_end(standin, bucket, capfd):
    code, out, _ = run_main(capfd, "--api-endpoint", standin.url, "--wait", "--poll-seconds", "0")
    assert code == 0
    assert "PIPELINE_STATE_RUNNING" in out and out.strip().endswith("PIPELINE_STATE_SUCCEEDED")
    standin.states = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"]
    code, out, err = run_main(capfd, "--api-endpoint", standin.url, "--wait", "--poll-seconds", "0")
    assert code == 1 and "PIPELINE_STATE_FAILED" in err


def test_upload_puts_the_data_on_gcs_once_and_runs_on_it(standin, bucket, capfd, tmp_path):
    data = tmp_path / "mydata.csv"
    data.write_text("text,label\nভালো,1\nখারাপ,0\n", encoding="utf-8")
    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    uri = f"gs://{BUCKET}/data/{digest}/mydata.csv"
    code, out, err = run_main(capfd, "--api-endpoint", standin.url, "--upload-data", str(data))
    assert code == 0, err
    assert f"uploaded: {uri}" in out
    blob = gcs_client().bucket(BUCKET).blob(f"data/{digest}/mydata.csv")
    assert blob.download_as_bytes() == data.read_bytes()
    job = standin.created_jobs()[0].body
    assert job["runtimeConfig"]["parameterValues"] == {"data_uri": uri}
    assert job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["data_uri"]["defaultValue"] == uri
    code, out, _ = run_main(capfd, "--api-endpoint", standin.url, "--upload-data", str(data))
    assert code == 0 and f"already there: {uri}" in out


def test_submit_takes_a_compiled_template(standin, bucket, capfd, tmp_path):
    template = compile_pipeline(
        CONFIG_DIR / "banglasenti.yaml",
        tmp_path / "t.yaml",
        "vertex",
        [f"pipeline.cpu_image={CPU}", f"pipeline.train_image={TPU}"],
    )
    code, _, err = run_main(
        capfd,
        "--template",
        str(template),
        "--param",
        "epochs=2",
        "--param",
        "lora_learning_rate=5e-4",
        "--api-endpoint",
        standin.url,
    )
    assert code == 0, err
    job = standin.created_jobs()[0].body
    assert job["runtimeConfig"]["parameterValues"] == {"epochs": 2, "lora_learning_rate": 5e-4}
    assert job["pipelineSpec"]["root"] == json.loads(json.dumps(yaml.safe_load(template.read_text())["root"]))


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        ("RESOURCE_EXHAUSTED", "request more quota for us-central1"),
        ("PERMISSION_DENIED", "roles/aiplatform.user on project proj"),
        ("INVALID_ARGUMENT", "--dry-run prints the request"),
    ],
)
def test_api_errors_end_in_one_line_saying_what_to_do(standin, bucket, capfd, status, hint):
    message = f"{status.lower()} from the stand-in"
    standin.fail["create_job"] = (status, message)
    code, out, err = run_main(capfd, "--api-endpoint", standin.url)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0] and hint in lines[0]
    assert "Traceback" not in err and "submitted" not in out and "http://" not in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "epochz=3"], "--param epochz: not a pipeline parameter"),
        (["--param", "lora_r=0"], "lora.r: Input should be greater than 0"),
        (["--experiment", "Bad_Name"], "--experiment 'Bad_Name'"),
        (["--api-endpoint", "http://example.com:8080"], "only for a loopback stand-in"),
        (["--set", "pipeline.train_image=python:3.11-slim"], "is a placeholder"),
        (["--upload-data", "/nonexistent/data.csv"], "--upload-data /nonexistent/data.csv: no such file"),
    ],
)
def test_bad_submissions_fail_before_any_call(standin, capfd, args, message):
    code, _, err = (
        run_main(capfd, *args, "--api-endpoint", standin.url)
        if "--api-endpoint" not in args
        else run_main(capfd, *args)
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert standin.requests == []


def test_missing_pipeline_root_bucket_is_named(standin, gcs_emulator, capfd):
    code, _, err = run_main(capfd, "--pipeline-root", "gs://no-such-bucket-here/root", "--api-endpoint", standin.url)
    assert code == 2 and "error: bucket: gs://no-such-bucket-here not found" in err
    assert standin.created_jobs() == []


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://localhost:9000", True),
        ("http://[::1]:80", True),
        ("http://10.0.0.5:8080", False),
        ("https://127.0.0.1:8443", False),
        ("us-central1-aiplatform.googleapis.com", False),
        (None, False),
    ],
)
def test_only_http_loopback_endpoints_count_as_a_stand_in(endpoint, loopback):
    from banglasenti.cloud.preflight_checks import is_loopback_http

    assert is_loopback_http(endpoint) is loopback


def test_upload_to_a_missing_bucket_is_named(standin, gcs_emulator, capfd, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nভালো,1\n", encoding="utf-8")
    code = main(
        [
            *BASE[:4],
            "--staging-bucket",
            "gs://no-staging-bucket",
            *BASE[6:],
            "--upload-data",
            str(data),
            "--api-endpoint",
            standin.url,
        ]
    )
    err = capfd.readouterr().err
    assert code == 2 and "gs://no-staging-bucket: bucket not found" in err and len(err.strip().splitlines()) == 1
    assert standin.created_jobs() == []


@pytest.mark.parametrize("mode", ["--check", "--dry-run"])
def test_check_reports_each_problem_on_one_line_and_creates_nothing(standin, bucket, capfd, mode):
    standin.enabled_apis.discard("artifactregistry.googleapis.com")
    code, out, err = run_main(
        capfd,
        "--region",
        "asia-east1",
        "--service-account",
        "runner",
        "--set",
        "pipeline.train_image=python:3.11-slim",
        "--api-endpoint",
        standin.url,
        "--serviceusage-endpoint",
        standin.url,
        mode,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert [line.split(": ")[:2] for line in lines[:-1]] == [
        ["error", "image"],
        ["error", "region"],
        ["error", "service account"],
        ["warning", "bucket"],
        ["error", "apis"],
    ]
    assert "'python:3.11-slim' is a placeholder" in lines[0]
    assert "asia-east1 does not offer TPU_V3" in lines[1] and "'runner' is not a service account" in lines[2]
    assert f"gs://{BUCKET} is in multi-region US, the run in asia-east1" in lines[3]
    assert "gcloud services enable artifactregistry.googleapis.com --project=proj" in lines[4]
    assert lines[-1] == "check: 4 blocking, 1 warning"
    assert ("create_pipeline_job" in json.loads(out)) if mode == "--dry-run" else out == ""
    assert standin.created_jobs() == [] and {r.method for r in standin.requests} == {"GET"}


def test_check_passes_a_sound_setup_and_says_what_it_could_not_ask(standin, bucket, capfd):
    code, out, err = run_main(capfd, "--check", "--serviceusage-endpoint", "http://127.0.0.1:9")
    assert code == 0 and out == ""
    assert err.strip().splitlines() == [
        "not checked: apis: Service Usage not reachable at http://127.0.0.1:9 (ConnectionError)",
        "check: 1 not checked",
    ]


def test_the_preflight_command_is_the_check(standin, bucket, capfd):
    """`python pipelines/preflight.py` takes submit's flags and reports what --check reports, submitting nothing."""
    from pipelines.preflight import main as preflight_main

    flags = ["--region", "asia-east1", "--api-endpoint", standin.url, "--serviceusage-endpoint", standin.url]
    code = preflight_main([*BASE, *flags])
    out, err = capfd.readouterr()
    check_code, check_out, check_err = run_main(capfd, *flags, "--check")
    assert code == check_code == 2 and out == check_out == ""
    assert err == check_err and "error: region: asia-east1 does not offer TPU_V3" in err
    assert standin.created_jobs() == []


def test_blocking_problems_stop_a_submission(standin, bucket, capfd):
    code, _, err = run_main(capfd, "--region", "europe-west1", "--api-endpoint", standin.url)
    assert code == 2 and err.startswith("error: region: europe-west1 does not offer TPU_V3")
    assert standin.requests == []


def test_a_run_created_but_not_linked_to_its_experiment_is_a_warning(standin, bucket, capfd):
    standin.fail["add_context_children"] = ("PERMISSION_DENIED", "aiplatform.metadataStores.contexts.update denied")
    code, out, err = run_main(capfd, "--experiment", "lora-vs-full", "--job-id", "run-7", "--api-endpoint", standin.url)
    assert code == 0, err
    [create] = standin.created_jobs()
    name = "projects/proj/locations/us-central1/pipelineJobs/run-7"
    link = "https://console.cloud.google.com/vertex-ai/locations/us-central1/pipelines/runs/run-7?project=proj"
    [line] = err.strip().splitlines()
    assert line.startswith(f"warning: run {name} was created and goes on ({link})")
    assert "'lora-vs-full' failed; do not resubmit" in line and "contexts.update denied" in line
    assert f"submitted: {name}" in out and f"console: {link}" in out and "experiment:" not in out


def test_an_experiment_failure_before_creation_stays_an_error(standin, bucket, capfd):
    standin.fail["create_context"] = ("PERMISSION_DENIED", "aiplatform.metadataStores.contexts.create denied")
    code, out, err = run_main(capfd, "--experiment", "lora-vs-full", "--api-endpoint", standin.url)
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith("error: permission denied (403 PERMISSION_DENIED)") and "contexts.create denied" in line
    assert standin.created_jobs() == [] and "submitted" not in out


def _post(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{url}/v1/projects/proj/locations/us-central1/pipelineJobs?pipelineJobId=j",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_stand_in_refuses_a_misspelt_request_field_naming_it(standin):
    good = {"displayName": "run", "serviceAccount": SA, "runtimeConfig": {"gcsOutputDirectory": "gs://b/root"}}
    assert _post(standin.url, good)[0] == 200
    code, answer = _post(standin.url, {**good, "serviceAcount": SA})
    assert code == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert 'no field named "serviceAcount"' in answer["error"]["message"]
    code, answer = _post(standin.url, {**good, "runtimeConfig": {"gcsOutputDirectry": "gs://b/root"}})
    assert code == 400 and '"gcsOutputDirectry"' in answer["error"]["message"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline(
        CONFIG_DIR / "banglasenti.yaml",
        tmp_path_factory.mktemp("t") / "t.yaml",
        "vertex",
        [f"pipeline.cpu_image={CPU}", f"pipeline.train_image={TPU}", "vertex.train.machine=tpu-v5e-4"],
    )  # worker pools in task inputs too (topology)
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize(
    ("where", "edit", "named"),
    [
        (
            "component",
            lambda pool: pool["machine_spec"].update(machine_typ=pool["machine_spec"].pop("machine_type")),
            "machine_typ",
        ),
        (
            "task",
            lambda pool: pool["machine_spec"].update(tpu_topolgy=pool["machine_spec"].pop("tpu_topology")),
            "tpu_topolgy",
        ),
        ("component", lambda pool: pool.update(machineSpec=pool.pop("machine_spec")), "machineSpec"),  # camelCase
    ],
)
def test_a_misspelt_worker_pool_field_fails_the_submission(
    standin, bucket, capfd, tmp_path, compiled, where, edit, named
):
    spec = json.loads(json.dumps(compiled))
    if where == "component":
        pool = spec["components"]["comp-train-lora"]["inputDefinitions"]["parameters"]["worker_pool_specs"][
            "defaultValue"
        ][0]
    else:
        pool = spec["root"]["dag"]["tasks"]["train-lora"]["inputs"]["parameters"]["worker_pool_specs"]["runtimeValue"][
            "constant"
        ][0]
    edit(pool)
    template = tmp_path / "t.yaml"
    template.write_text(yaml.safe_dump(spec))
    code, out, err = run_main(capfd, "--template", str(template), "--region", "us-west4", "--api-endpoint", standin.url)
    assert code == 1 and "submitted" not in out
    [line] = [x for x in err.strip().splitlines() if x.startswith("error: ")]
    assert "(400 INVALID_ARGUMENT)" in line and "worker_pool_specs[0]" in line and named in line
    assert standin.jobs == {}
