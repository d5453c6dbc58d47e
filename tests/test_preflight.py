"""banglasenti/cloud/preflight_checks.py: the checks behind `submit.py --check` (and pipelines/preflight.py), against a
compiled spec, the GCS emulator and the REST stand-in's Service Usage route."""

import io

import pytest
import yaml

from banglasenti.cloud import preflight_checks as preflight
from banglasenti.config.schema import CONFIG_DIR
from banglasenti.storage.artifacts import gcs_client
from pipelines.compile import compile_pipeline

CPU = "us-central1-docker.pkg.dev/proj/banglasenti/cpu:v1"
TPU = "us-central1-docker.pkg.dev/proj/banglasenti/tpu:v1"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = compile_pipeline(
        CONFIG_DIR / "banglasenti.yaml",
        tmp_path_factory.mktemp("spec") / "p.yaml",
        "vertex",
        [f"pipeline.cpu_image={CPU}", f"pipeline.train_image={TPU}"],
    )
    return yaml.safe_load(path.read_text())


@pytest.mark.component
def test_worker_pools_are_found_in_components_and_in_nested_task_inputs(spec):
    found = dict(preflight.worker_pools(spec))
    assert {"comp-train-lora worker_pool_specs[0]", "comp-train-baseline worker_pool_specs[0]"} <= set(found)
    nested = {
        "components": {
            "comp-for-loop-1": {
                "dag": {
                    "tasks": {
                        "train": {
                            "inputs": {
                                "parameters": {
                                    "worker_pool_specs": {
                                        "runtimeValue": {"constant": [{"machine_spec": {"accelerator_type": "TPU_V3"}}]}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert list(preflight.worker_pools(nested)) == [
        ("task train (comp-for-loop-1) worker_pool_specs[0]", {"machine_spec": {"accelerator_type": "TPU_V3"}})
    ]


def test_a_compiled_spec_with_real_images_in_a_tpu_region_has_no_finding(spec):
    assert preflight.image_findings(spec) == []
    assert preflight.region_findings(spec, "us-central1") == []
    assert preflight.region_findings(spec, "europe-west4") == []
    assert TPU in preflight.step_images(spec) and CPU in preflight.step_images(spec)


@pytest.mark.parametrize("region", ["asia-east1", "us-east1", "europe-west1"])
def test_a_region_without_tpu_v3_blocks(spec, region):
    [finding] = preflight.region_findings(spec, region)
    assert finding.level == preflight.ERROR
    assert f"{region} does not offer TPU_V3" in finding.message and preflight.LOCATIONS_SOURCE in finding.message


def test_an_accelerator_without_a_region_list_is_not_checked():
    gpu = {
        "components": {
            "comp-train": {
                "inputDefinitions": {
                    "parameters": {
                        "worker_pool_specs": {
                            "defaultValue": [
                                {
                                    "machine_spec": {
                                        "machine_type": "a2-highgpu-1g",
                                        "accelerator_type": "NVIDIA_TESLA_A100",
                                    }
                                }
                            ]
                        }
                    }
                }
            }
        }
    }
    [finding] = preflight.region_findings(gpu, "us-central1")
    assert finding.level == preflight.NOT_CHECKED and "NVIDIA_TESLA_A100" in finding.message


@pytest.mark.component
def test_placeholder_images_are_named_one_line_each(spec, tmp_path):
    path = compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", "vertex", [])
    findings = preflight.image_findings(yaml.safe_load(path.read_text()))
    assert {f.level for f in findings} == {preflight.ERROR}
    named = " ".join(f.message for f in findings)
    assert "banglasenti/cpu:COMMIT_SHA" in named and "banglasenti/tpu:COMMIT_SHA" in named
    assert all("\n" not in f.line() for f in findings)


@pytest.mark.parametrize(
    ("account", "level"),
    [
        ("banglasenti-runner@my-project.iam.gserviceaccount.com", None),
        ("123456789012-compute@developer.gserviceaccount.com", None),
        ("my-project@appspot.gserviceaccount.com", None),
        ("", preflight.WARNING),
        ("runner", preflight.ERROR),
        ("banglasenti-runner@my-project.iam.gserviceaccount.co", preflight.ERROR),
        ("run@my-project.iam.gserviceaccount.com", preflight.ERROR),  # ids are 6-30 characters
        ("Banglasenti-runner@my-project.iam.gserviceaccount.com", preflight.ERROR),
        ("service-123@gcp-sa-aiplatform-cc.iam.gserviceaccount.com", preflight.ERROR),  # a service agent
        ("banglasenti-runner@my-project.iam.gserviceaccount.com ", preflight.ERROR),
    ],
)
def test_service_account_format(account, level):
    findings = preflight.service_account_findings(account)
    assert [f.level for f in findings] == ([level] if level else [])


@pytest.mark.parametrize(
    ("location", "data_locations", "region", "warned"),
    [
        ("US-CENTRAL1", [], "us-central1", False),
        ("US", [], "us-central1", False),  # a multi-region holding the region
        ("EU", [], "europe-west4", False),
        ("NAM4", [], "us-east1", False),  # a predefined dual-region
        ("US", ["US-CENTRAL1", "US-WEST1"], "us-west1", False),  # a configurable dual-region
        ("US", [], "europe-west4", True),
        ("EUROPE-WEST4", [], "us-central1", True),
        ("NAM4", [], "us-west1", True),
    ],
)
def test_bucket_location_against_the_region(location, data_locations, region, warned):
    finding = preflight.location_finding("b", location, data_locations, region)
    assert (finding is not None) is warned
    if warned:
        assert finding.level == preflight.WARNING and "gs://b is in" in finding.message and region in finding.message


def test_bucket_findings_on_the_emulator(gcs_emulator):
    """The emulator makes every bucket in the US multi-region and (unlike GCS) lets a patch move it; the location
    read back is what the check sees."""
    client = gcs_client()
    for name in ("pf-us", "pf-asia"):
        client.lookup_bucket(name) or client.create_bucket(name)
    asia = client.bucket("pf-asia")
    asia.location = "ASIA-EAST1"  # GCS reports locations upper case
    asia.patch()
    assert preflight.bucket_findings(["gs://pf-us/root", "gs://pf-us/data"], "us-central1") == []
    findings = preflight.bucket_findings(["gs://pf-asia/root", "gs://pf-missing/x", "gs://pf-us/r"], "us-central1")
    assert [(f.level, f.message.split(":")[0]) for f in findings] == [
        (preflight.WARNING, "gs"),
        (preflight.ERROR, "gs"),
    ]
    assert "gs://pf-asia is in ASIA-EAST1, the run in us-central1" in findings[0].message
    assert "gs://pf-missing not found" in findings[1].message and "--location=us-central1" in findings[1].message


def test_a_bucket_that_cannot_be_asked_is_not_checked():
    from google.auth.exceptions import DefaultCredentialsError

    class NoCredentials:
        def get_bucket(self, *args, **kwargs):
            raise DefaultCredentialsError("Your default credentials were not found.")

    [finding] = preflight.bucket_findings(["gs://b/root"], "us-central1", client=NoCredentials())
    assert finding.level == preflight.NOT_CHECKED and "no usable credentials" in finding.message


def test_apis_asked_from_service_usage(standin):
    assert preflight.api_findings("proj", standin.url) == []
    standin.enabled_apis -= {"artifactregistry.googleapis.com", "aiplatform.googleapis.com"}
    [finding] = preflight.api_findings("proj", standin.url)
    assert finding.level == preflight.ERROR
    assert finding.message.endswith(
        "gcloud services enable aiplatform.googleapis.com artifactregistry.googleapis.com --project=proj"
    )
    [request] = [r for r in standin.requests if r.path.endswith(":batchGet")][-1:]
    assert request.query["names"][0] == "projects/proj/services/aiplatform.googleapis.com"


def test_apis_not_checked_when_service_usage_cannot_be_asked(standin, monkeypatch):
    standin.fail["batch_get_services"] = ("PERMISSION_DENIED", "serviceusage.services.get denied")
    [finding] = preflight.api_findings("proj", standin.url)
    assert finding.level == preflight.NOT_CHECKED and "roles/serviceusage.serviceUsageViewer" in finding.message
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    [finding] = preflight.api_findings("proj", closed, timeout=5)
    assert finding.level == preflight.NOT_CHECKED and "not reachable" in finding.message

    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    [finding] = preflight.api_findings("proj", "https://serviceusage.googleapis.com")
    assert finding.level == preflight.NOT_CHECKED and "no usable credentials" in finding.message


def test_report_prints_one_line_each_and_blocks_only_on_errors():
    warning = preflight.Finding(preflight.WARNING, "bucket", "gs://b is in US")
    error = preflight.Finding(preflight.ERROR, "image", "'x' is a placeholder")
    out = io.StringIO()
    assert preflight.report([warning], out) == 0
    assert out.getvalue().splitlines() == ["warning: bucket: gs://b is in US", "check: 1 warning"]
    out = io.StringIO()
    assert preflight.report([error, warning], out) == 2
    assert out.getvalue().splitlines()[-1] == "check: 1 blocking, 1 warning"
    out = io.StringIO()
    assert preflight.report([], out) == 0 and out.getvalue() == "check: no problem found\n"
