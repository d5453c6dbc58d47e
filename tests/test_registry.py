"""The Model Registry steps: the gate and the batch prediction in the compiled vertex spec, the gate on the local
runner, and the requests to the registry (versions, evaluations, the default alias) and to the batch prediction
service, answered by the REST stand-in (tests/support/vertex_standin.py)."""

import json
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from banglasenti.cloud.model_registry import CLASSIFICATION_SCHEMA, RegistryError, model_client, register
from banglasenti.config.schema import CLASS_NAMES, CONFIG_DIR, load_config
from banglasenti.storage.artifacts import InputError
from components.selected_macro_f1 import selected_macro_f1
from components.upload_model import upload_model
from pipelines.compile import compile_pipeline
from tests.support.vertex_standin import _integral

PROJECT, REGION = "proj", "europe-west4"
CPU = f"{REGION}-docker.pkg.dev/{PROJECT}/banglasenti/cpu:v1"
SERVE = f"{REGION}-docker.pkg.dev/{PROJECT}/banglasenti/serve:v1"
SETTINGS = [
    f"vertex.region={REGION}",
    f"pipeline.serve_image={SERVE}",
    f"pipeline.cpu_image={CPU}",
    f"pipeline.train_image={CPU.replace('/cpu:', '/tpu:')}",
    "vertex.pipeline_root=gs://bucket/root",
]
CONFUSION = [[40, 5, 5], [4, 30, 6], [10, 10, 60]]


def compiled(tmp_path, *overrides, target="vertex"):
    spec = yaml.safe_load(
        compile_pipeline(
            CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", target, [*SETTINGS, *overrides]
        ).read_text()
    )
    return spec, spec["root"]["dag"]["tasks"]


def constant(task, name):
    return task["inputs"]["parameters"][name]["runtimeValue"]["constant"]


@pytest.mark.component
def test_vertex_target_gates_the_upload_on_the_selected_models_macro_f1(tmp_path):
    spec, tasks = compiled(tmp_path, "registry.upload=true", "registry.min_macro_f1=0.7", "registry.display_name=bs")
    gate = tasks["condition-1"]
    assert gate["taskInfo"]["name"] == "macro-f1-gate"
    assert (
        gate["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--selected-macro-f1-Output'] >= 0.7"
    )
    read = tasks["selected-macro-f1"]["inputs"]["artifacts"]
    assert read["metrics"]["taskOutputArtifact"] == {"outputArtifactKey": "metrics", "producerTask": "evaluate"}
    assert read["model"]["taskOutputArtifact"] == {"outputArtifactKey": "model", "producerTask": "export-model"}
    upload = spec["components"]["comp-condition-1"]["dag"]["tasks"]["upload-model"]
    assert upload["inputs"]["artifacts"]["model"]["componentInputArtifact"] == "pipelinechannel--export-model-model"
    assert (
        upload["inputs"]["artifacts"]["lora_confusion"]["componentInputArtifact"]
        == "pipelinechannel--evaluate-lora_confusion"
    )
    assert constant(upload, "display_name") == "bs" and constant(upload, "parent_model") == ""
    assert constant(upload, "serving_image") == SERVE
    assert constant(upload, "location") == REGION  # registry.location empty: the run's region
    assert constant(upload, "project") == "{{$.pipeline_google_cloud_project_id}}"  # Vertex fills in the job's
    outputs = spec["components"]["comp-upload-model"]["outputDefinitions"]["artifacts"]
    assert outputs["vertex_model"]["artifactType"]["schemaTitle"] == "google.VertexModel"  # lineage to the registry
    images = {
        name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items() if "container" in ex
    }
    assert images["exec-upload-model"] == images["exec-selected-macro-f1"] == CPU
    assert "model-batch-predict" not in spec["components"]["comp-condition-1"]["dag"]["tasks"]


@pytest.mark.component
def test_registry_location_and_parent_come_from_the_config(tmp_path):
    parent = f"projects/{PROJECT}/locations/us-east1/models/42"
    spec, _ = compiled(
        tmp_path,
        "registry.upload=true",
        "registry.location=us-east1",
        f"registry.parent_model={parent}",
        f"registry.project={PROJECT}",
    )
    upload = spec["components"]["comp-condition-1"]["dag"]["tasks"]["upload-model"]
    assert constant(upload, "location") == "us-east1" and constant(upload, "parent_model") == parent
    assert constant(upload, "project") == PROJECT
    with pytest.raises(ValueError, match="registry.parent_model .* is not in the registry's region europe-west4"):
        compiled(tmp_path, "registry.upload=true", f"registry.parent_model={parent}")


@pytest.mark.component
@pytest.mark.parametrize("target, overrides", [("vertex", []), ("local", ["registry.upload=true"])])
def test_no_registry_steps_unless_enabled_on_vertex(tmp_path, target, overrides):
    _, tasks = compiled(tmp_path, *overrides, target=target)
    assert not {"condition-1", "selected-macro-f1"} & set(tasks)


@pytest.mark.component
def test_batch_prediction_is_compiled_only_when_asked(tmp_path):
    spec, _ = compiled(
        tmp_path,
        "registry.upload=true",
        "registry.batch_predict_source=gs://bucket/texts.jsonl",
        "registry.batch_predict_machine_type=n1-standard-8",
        "registry.batch_predict_max_replicas=3",
    )
    tasks = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    batch = tasks["model-batch-predict"]
    assert batch["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
        "outputArtifactKey": "vertex_model",
        "producerTask": "upload-model",
    }
    assert constant(batch, "gcs_source_uris") == ["gs://bucket/texts.jsonl"]
    assert constant(batch, "instances_format") == constant(batch, "predictions_format") == "jsonl"
    assert constant(batch, "gcs_destination_output_uri_prefix") == "gs://bucket/root/batch-predictions"
    assert constant(batch, "machine_type") == "n1-standard-8" and constant(batch, "max_replica_count") == 3
    assert constant(batch, "location") == REGION
    spec, _ = compiled(
        tmp_path,
        "registry.upload=true",
        "registry.batch_predict_source=gs://bucket/texts.jsonl",
        "registry.batch_predict_output=gs://out/preds",
    )
    batch = spec["components"]["comp-condition-1"]["dag"]["tasks"]["model-batch-predict"]
    assert constant(batch, "gcs_destination_output_uri_prefix") == "gs://out/preds"


@pytest.mark.component
def test_the_check_names_a_placeholder_serving_image(tmp_path):
    from banglasenti.cloud import preflight_checks as preflight

    spec, _ = compiled(tmp_path, "registry.upload=true")
    assert preflight.image_findings(spec) == []
    spec, _ = compiled(
        tmp_path,
        "registry.upload=true",
        "pipeline.serve_image=us-docker.pkg.dev/my-project/banglasenti/serve:COMMIT_SHA",
    )
    [finding] = preflight.image_findings(spec)
    assert "serve:COMMIT_SHA" in finding.message and "pipeline.serve_image" in finding.message


def test_a_bad_serving_image_is_named():
    from banglasenti.config.schema import ConfigError

    with pytest.raises(ConfigError, match=": pipeline.serve_image: .*sha256"):
        load_config(CONFIG_DIR / "banglasenti.yaml", {"pipeline.serve_image": "us-docker.pkg.dev/p/r/x@sha256:12"})


def test_batch_prediction_needs_the_upload(tmp_path):
    with pytest.raises(ValueError, match="batch_predict_source .* needs upload: true"):
        load_config(CONFIG_DIR / "banglasenti.yaml", {"registry.batch_predict_source": "gs://bucket/t.jsonl"})


@pytest.mark.parametrize(
    "metadata, expected", [({}, 0.61), ({"selected": "lora"}, 0.61), ({"selected": "baseline"}, 0.72)]
)
def test_selected_macro_f1_reads_the_exported_models_score(tmp_path, metadata, expected):
    metrics = dsl.Metrics(
        uri=str(tmp_path / "m"), metadata={"lora_test_macro_f1": 0.61, "baseline_test_macro_f1": 0.72}
    )
    model = dsl.Model(uri=str(tmp_path / "model"), metadata=metadata)
    assert selected_macro_f1.python_func(metrics=metrics, model=model) == pytest.approx(expected)


def test_selected_macro_f1_names_what_is_missing(tmp_path):
    model = dsl.Model(uri=str(tmp_path / "model"), metadata={"selected": "baseline"})
    with pytest.raises(InputError, match="baseline_test_macro_f1"):
        selected_macro_f1.python_func(metrics=dsl.Metrics(uri=str(tmp_path / "m"), metadata={}), model=model)
    with pytest.raises(InputError, match="selected='tfidf'"):
        selected_macro_f1.python_func(
            metrics=dsl.Metrics(uri=str(tmp_path / "m"), metadata={}),
            model=dsl.Model(uri=str(tmp_path / "x"), metadata={"selected": "tfidf"}),
        )


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def scored_model(
    score: float,
    metrics: dsl.Output[dsl.Metrics],
    model: dsl.Output[dsl.Model],
    lora_confusion: dsl.Output[dsl.ClassificationMetrics],
    baseline_confusion: dsl.Output[dsl.ClassificationMetrics],
):
    """Stand-in for evaluate + export: the gate's metric, confusion matrices and a model directory."""
    import os

    metrics.log_metric("baseline_test_macro_f1", score)
    metrics.log_metric("baseline_test_accuracy", score)
    for artifact in (lora_confusion, baseline_confusion):
        artifact.log_confusion_matrix(["negative", "positive", "neutral"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    model.metadata["selected"] = "baseline"
    os.makedirs(os.path.join(model.path, "merged"))


@pytest.mark.component
@pytest.mark.parametrize("score, uploads", [(0.5, False), (0.8, True)])
def test_gate_on_the_local_runner(tmp_path, score, uploads):
    """The dsl.If runs on the KFP local runner: below the threshold the upload is skipped; above it the upload
    step runs (and fails here, with no Google Cloud credentials)."""
    from kfp import local

    from pipelines.pipeline import Dag
    from pipelines.registry_upload import add_registry_upload

    cfg = load_config(
        CONFIG_DIR / "local.yaml", {"registry.upload": True, "registry.min_macro_f1": 0.6, "registry.project": "p"}
    )

    @dsl.pipeline(name="gate")
    def gate():
        task = scored_model(score=score)
        add_registry_upload(Dag(cfg, "local"), task, task)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=False)
    gate()
    run_dir = next(tmp_path.iterdir())
    read = json.loads((run_dir / "selected-macro-f1" / "executor_output.json").read_text())
    assert read["parameterValues"]["Output"] == pytest.approx(score)
    assert (run_dir / "upload-model").exists() == uploads


# The registry through the REST stand-in ------------------------------------------------------------------------


def run_register(standin, macro_f1, parent_model="", uri="gs://bucket/run/export-model/model/merged"):
    return register(
        model_client(REGION, standin.url),
        project=PROJECT,
        location=REGION,
        parent_model=parent_model,
        display_name="bs",
        artifact_uri=uri,
        serving_image=SERVE,
        selected="lora",
        classes=list(CLASS_NAMES),
        confusion=CONFUSION,
        macro_f1=macro_f1,
        accuracy=0.65,
    )


@pytest.mark.component
def test_first_upload_creates_the_model_with_its_evaluation(standin):
    result = run_register(standin, 0.66)
    [listing] = standin.calls("/models", "GET")
    assert listing.query["filter"] == ['display_name="bs"']
    [upload] = standin.calls("/models:upload")
    assert upload.path == f"/v1/projects/{PROJECT}/locations/{REGION}/models:upload"
    assert "parentModel" not in upload.body  # no model named bs yet
    model = upload.body["model"]
    assert model["artifactUri"] == "gs://bucket/run/export-model/model/merged"
    assert model["containerSpec"] == {
        "imageUri": SERVE,
        "predictRoute": "/predict",
        "healthRoute": "/health",
        "ports": [{"containerPort": 8080}],
    }
    assert model["displayName"] == "bs" and "0.6600" in model["description"]
    name = f"projects/{PROJECT}/locations/{REGION}/models/1000"
    assert result["resourceName"] == f"{name}@1" and result["is_default_version"]
    assert standin.default_version(name) == "1" and standin.calls(":mergeVersionAliases") == []
    [imported] = standin.calls("/evaluations:import")
    assert imported.path.endswith("/models/1000@1/evaluations:import")
    evaluation = imported.body["modelEvaluation"]
    assert evaluation["metricsSchemaUri"] == CLASSIFICATION_SCHEMA
    assert evaluation["metrics"]["confusionMatrix"]["rows"] == CONFUSION
    assert [s["displayName"] for s in evaluation["metrics"]["confusionMatrix"]["annotationSpecs"]] == list(CLASS_NAMES)
    assert evaluation["metrics"]["confidenceMetrics"][0]["f1ScoreMacro"] == pytest.approx(0.66)
    [slices] = standin.calls("/slices:batchImport")
    per_class = {
        s["slice"]["value"]: s["metrics"]["confidenceMetrics"][0] for s in slices.body["modelEvaluationSlices"]
    }
    assert set(per_class) == set(CLASS_NAMES)
    assert per_class["negative"]["precision"] == pytest.approx(40 / 54)  # column: 40 + 4 + 10 predicted negative
    assert per_class["negative"]["recall"] == pytest.approx(40 / 50)
    assert per_class["neutral"]["recall"] == pytest.approx(60 / 80)


@pytest.mark.component
def test_a_better_challenger_becomes_the_default_version(standin):
    first = run_register(standin, 0.66)
    second = run_register(standin, 0.71, uri="gs://bucket/run2/merged")
    name = first["model"]
    upload = standin.calls("/models:upload")[1]
    assert upload.body["parentModel"] == name and "versionAliases" not in upload.body["model"]
    [merge] = standin.calls(":mergeVersionAliases")
    assert merge.path.endswith("/models/1000@2:mergeVersionAliases") and merge.body == {"versionAliases": ["default"]}
    assert second["is_default_version"] and second["champion_version"] == f"{name}@1"
    assert second["champion_test_macro_f1"] == pytest.approx(0.66)
    assert standin.default_version(name) == "2" and len(standin.models) == 1
    # the evaluation was imported before the version became default: the order of the calls
    paths = [r.path for r in standin.requests if r.method == "POST"]
    assert paths.index(merge.path) > max(i for i, p in enumerate(paths) if p.endswith("/evaluations:import"))


@pytest.mark.component
def test_a_worse_challenger_is_kept_as_a_version_but_not_made_default(standin):
    run_register(standin, 0.66)
    run_register(standin, 0.71)
    third = run_register(standin, 0.69)
    name = third["model"]
    assert third["resourceName"] == f"{name}@3" and not third["is_default_version"]
    assert third["champion_version"] == f"{name}@2" and third["champion_test_macro_f1"] == pytest.approx(0.71)
    assert standin.default_version(name) == "2" and len(standin.calls(":mergeVersionAliases")) == 1
    assert len(standin.evaluations[f"{name}@3"]) == 1  # its evaluation is there for a later comparison


@pytest.mark.component
def test_a_tie_keeps_the_champion(standin):
    run_register(standin, 0.66)
    tie = run_register(standin, 0.66)
    assert not tie["is_default_version"] and standin.default_version(tie["model"]) == "1"


@pytest.mark.component
def test_a_configured_parent_gets_the_version_without_a_lookup(standin):
    name = run_register(standin, 0.6)["model"]
    standin.requests.clear()
    run_register(standin, 0.7, parent_model=name)
    assert standin.calls("/models", "GET") == []
    assert standin.calls("/models:upload")[0].body["parentModel"] == name


@pytest.mark.component
def test_an_unknown_parent_is_named(standin):
    with pytest.raises(RegistryError, match=r"Model Registry \(europe-west4\): 404 Model .*models/77 not found"):
        run_register(standin, 0.7, parent_model=f"projects/{PROJECT}/locations/{REGION}/models/77")
    assert standin.calls("/models:upload") == []


@pytest.mark.component
def test_several_models_with_the_display_name_are_refused(standin):
    first = run_register(standin, 0.6)["model"]
    standin.models[first.replace("1000", "2000")] = dict(standin.models[first])
    with pytest.raises(RegistryError, match="2 registry models are named 'bs'.*registry.parent_model"):
        run_register(standin, 0.7)


@pytest.mark.component
def test_the_stand_in_refuses_what_the_service_refuses(standin):
    """The stand-in's checks fail as the service does (so the tests above could fail): a misspelt field, an
    evaluation outside its metrics schema, a batch job of a custom-container model without a machine type."""
    import requests
    from google.api_core.exceptions import BadRequest
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format

    from banglasenti.cloud.model_registry import evaluation_request

    result = run_register(standin, 0.6)
    parent = f"projects/{PROJECT}/locations/{REGION}"
    misspelt = {"model": {"displayName": "bs", "containerSpec": {"imageUri": SERVE, "predictRoot": "/p"}}}
    bad = requests.post(f"{standin.url}/v1/{parent}/models:upload", json=misspelt, timeout=10)
    assert bad.status_code == 400 and "predictRoot" in bad.json()["error"]["message"]
    evaluation, _ = evaluation_request(list(CLASS_NAMES), CONFUSION, 0.6, 0.6, {})
    evaluation["metrics"]["macroF1"] = 0.6
    message = aiplatform_v1.ModelEvaluation()
    json_format.ParseDict(evaluation, type(message).pb(message))
    with pytest.raises(BadRequest, match="not in the classification metrics schema: \\['macroF1'\\]"):
        model_client(REGION, standin.url).import_model_evaluation(
            parent=result["resourceName"], model_evaluation=message
        )
    jobs = aiplatform_v1.JobServiceClient(
        client_options={"api_endpoint": standin.url}, transport="rest", credentials=_anonymous()
    )
    job = {
        "display_name": "j",
        "model": result["resourceName"],
        "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": ["gs://bucket/t.jsonl"]}},
        "output_config": {"predictions_format": "jsonl", "gcs_destination": {"output_uri_prefix": "gs://bucket/o"}},
    }
    with pytest.raises(BadRequest, match="machine_type is required"):
        jobs.create_batch_prediction_job(parent=parent, batch_prediction_job=job)


def _anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


@pytest.mark.component
def test_upload_step_outputs_a_vertex_model_of_the_new_version(standin, monkeypatch, tmp_path):
    """The component body: the export's `selected` model's confusion matrix and score go to the registry, and the
    VertexModel artifact names the new version."""
    from google_cloud_pipeline_components.types.artifact_types import VertexModel

    import banglasenti.cloud.model_registry

    monkeypatch.setattr(
        banglasenti.cloud.model_registry, "model_client", lambda location: model_client(location, standin.url)
    )
    model = dsl.Model(uri="gs://bucket/root/export-model/model/", metadata={"selected": "baseline"})
    metrics = dsl.Metrics(
        uri=str(tmp_path / "m"),
        metadata={"baseline_test_macro_f1": 0.7123, "baseline_test_accuracy": 0.75, "lora_test_macro_f1": 0.5},
    )
    confusions = {}
    for name, matrix in (("lora", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), ("baseline", CONFUSION)):
        confusions[name] = dsl.ClassificationMetrics(uri=str(tmp_path / name))
        confusions[name].log_confusion_matrix(list(CLASS_NAMES), matrix)
    out = VertexModel(uri=str(tmp_path / "vm"), metadata={})
    upload_model.python_func(
        model=model,
        metrics=metrics,
        lora_confusion=confusions["lora"],
        baseline_confusion=confusions["baseline"],
        display_name="bs",
        parent_model="",
        project=PROJECT,
        location=REGION,
        serving_image=SERVE,
        vertex_model=out,
    )
    [upload] = standin.calls("/models:upload")
    assert upload.body["model"]["artifactUri"] == "gs://bucket/root/export-model/model/merged"
    assert upload.body["model"]["labels"] == {"source": "banglasenti-pipeline", "selected": "baseline"}
    name = f"projects/{PROJECT}/locations/{REGION}/models/1000@1"
    assert out.uri == f"https://{REGION}-aiplatform.googleapis.com/v1/{name}"
    assert out.metadata["resourceName"] == name and out.metadata["selected"] == "baseline"
    evaluation = standin.calls("/evaluations:import")[0].body["modelEvaluation"]
    assert evaluation["metrics"]["confusionMatrix"]["rows"] == CONFUSION
    assert evaluation["metrics"]["confidenceMetrics"][0]["f1ScoreMacro"] == pytest.approx(0.7123)
    assert evaluation["metadata"] == {"selected": "baseline", "test_macro_f1": pytest.approx(0.7123)}


@pytest.mark.component
def test_batch_prediction_job_request_through_the_ops_launcher(standin, monkeypatch, tmp_path):
    """The compiled ModelBatchPredictOp's command, its placeholders resolved as KFP does for the new version's
    VertexModel, run through google-cloud-pipeline-components' launcher against the stand-in."""
    from google.cloud import aiplatform
    from google.cloud.aiplatform_v1 import JobServiceClient
    from google.protobuf import json_format
    from google_cloud_pipeline_components.container.v1.batch_prediction_job import launcher
    from google_cloud_pipeline_components.types.artifact_types import VertexModel
    from kfp.local import executor_input_utils, placeholder_utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    version = run_register(standin, 0.7)["resourceName"]
    spec, _ = compiled(
        tmp_path,
        "registry.upload=true",
        "registry.batch_predict_source=gs://bucket/texts.jsonl",
        f"registry.project={PROJECT}",
    )
    task = spec["components"]["comp-condition-1"]["dag"]["tasks"]["model-batch-predict"]
    component = json_format.ParseDict(
        spec["components"][task["componentRef"]["name"]], pipeline_spec_pb2.ComponentSpec()
    )
    arguments = {k: v["runtimeValue"]["constant"] for k, v in task["inputs"]["parameters"].items()}
    arguments["model"] = VertexModel(
        name="vertex_model", uri=f"https://x/v1/{version}", metadata={"resourceName": version}
    )
    executor_input = executor_input_utils.construct_executor_input(component, arguments, str(tmp_path / "task"), False)
    container = spec["deploymentSpec"]["executors"][component.executor_label]["container"]
    command = placeholder_utils.replace_placeholders(
        container["command"] + container["args"],
        _integral(json_format.MessageToDict(executor_input)),
        "run",
        "task",
        str(tmp_path),
        "job-1",
    )  # integral numbers as the pipeline backend writes them (support/vertex_standin.py)
    assert command[:3] == ["python3", "-u", "-m"] and command[3] == launcher.__name__
    monkeypatch.setattr(
        aiplatform.gapic,
        "JobServiceClient",
        lambda **kw: JobServiceClient(
            client_options={"api_endpoint": standin.url}, transport="rest", credentials=_anonymous()
        ),
    )
    launcher.main(command[4:])
    [create] = standin.calls("/batchPredictionJobs")
    assert create.path == f"/v1/projects/{PROJECT}/locations/{REGION}/batchPredictionJobs"
    job = create.body
    assert job["model"] == version  # the new version, not the model's default
    assert job["inputConfig"] == {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://bucket/texts.jsonl"]}}
    assert job["outputConfig"] == {
        "predictionsFormat": "jsonl",
        "gcsDestination": {"outputUriPrefix": "gs://bucket/root/batch-predictions"},
    }
    assert job["dedicatedResources"]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert job["dedicatedResources"]["startingReplicaCount"] == job["dedicatedResources"]["maxReplicaCount"] == 1
    output = json.loads(Path(executor_input.outputs.output_file).read_text())
    directory = output["artifacts"]["gcs_output_directory"]["artifacts"][0]["uri"]
    assert directory.startswith("gs://bucket/root/batch-predictions/prediction-banglasenti-batch-predict-")
