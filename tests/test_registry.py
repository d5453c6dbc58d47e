"""The Model Registry upload: the dsl.If gate in the compiled vertex spec, on the local runner, and the upload
request itself."""

import json
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from components.config import CONFIG_DIR, load_config
from components.registry import read_metric, upload_model
from pipelines.compile import compile_pipeline


def compiled_tasks(tmp_path, target, *overrides):
    spec = yaml.safe_load(compile_pipeline(CONFIG_DIR / "banglasenti.yaml", tmp_path / "p.yaml", target,
                                           list(overrides)).read_text())
    return spec, spec["root"]["dag"]["tasks"]


def test_vertex_target_gates_the_upload_on_lora_macro_f1(tmp_path):
    spec, tasks = compiled_tasks(tmp_path, "vertex", "registry.upload=true", "registry.min_macro_f1=0.7",
                                 "registry.display_name=bs-lora")
    gate = tasks["condition-1"]
    assert gate["taskInfo"]["name"] == "lora-macro-f1-gate"
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--read-metric-Output'] >= 0.7"
    read = tasks["read-metric"]["inputs"]
    assert read["parameters"]["key"]["runtimeValue"]["constant"] == "lora_test_macro_f1"
    assert read["artifacts"]["metrics"]["taskOutputArtifact"] == {"outputArtifactKey": "metrics",
                                                                  "producerTask": "evaluate"}
    upload = spec["components"]["comp-condition-1"]["dag"]["tasks"]["upload-model"]["inputs"]
    assert upload["artifacts"]["model"]["componentInputArtifact"] == "pipelinechannel--export-model-model"
    assert upload["parameters"]["display_name"]["runtimeValue"]["constant"] == "bs-lora"
    images = {name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items()
              if "container" in ex}
    cpu = load_config(CONFIG_DIR / "banglasenti.yaml").pipeline.cpu_image
    assert images["exec-upload-model"] == images["exec-read-metric"] == cpu


@pytest.mark.parametrize("target, overrides", [("vertex", []), ("local", ["registry.upload=true"])])
def test_no_upload_unless_enabled_on_vertex(tmp_path, target, overrides):
    _, tasks = compiled_tasks(tmp_path, target, *overrides)
    assert not {"condition-1", "read-metric"} & set(tasks)


def test_read_metric_reads_one_scalar(tmp_path):
    metrics = dsl.Metrics(uri=str(tmp_path / "m"), metadata={"lora_test_macro_f1": 0.61, "x": 1.0})
    assert read_metric.python_func(metrics=metrics, key="lora_test_macro_f1") == pytest.approx(0.61)
    with pytest.raises(KeyError, match="lora_test_macro_f1"):
        read_metric.python_func(metrics=dsl.Metrics(uri=str(tmp_path / "n"), metadata={}), key="lora_test_macro_f1")


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def scored_model(score: float, metrics: dsl.Output[dsl.Metrics], model: dsl.Output[dsl.Model]):
    """Stand-in for evaluate + export: a Metrics artifact with the gate's key, and a model directory."""
    import os

    metrics.log_metric("lora_test_macro_f1", score)
    os.makedirs(os.path.join(model.path, "merged"))


@pytest.mark.parametrize("score, uploads", [(0.5, False), (0.8, True)])
def test_gate_on_the_local_runner(tmp_path, score, uploads):
    """The dsl.If runs on the KFP local runner: below the threshold the upload is skipped; above it the upload
    step runs (and fails here, with no Google Cloud credentials)."""
    from kfp import local

    from pipelines.pipeline import Dag
    from pipelines.registry import add_registry_upload

    cfg = load_config(CONFIG_DIR / "local.yaml", {"registry.min_macro_f1": 0.6, "registry.project": "p"})

    @dsl.pipeline(name="gate")
    def gate():
        task = scored_model(score=score)
        add_registry_upload(Dag(cfg, "local"), task, task)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=False)
    gate()
    run_dir = next(tmp_path.iterdir())
    read = json.loads((run_dir / "read-metric" / "executor_output.json").read_text())
    assert read["parameterValues"]["Output"] == pytest.approx(score)
    assert (run_dir / "upload-model").exists() == uploads


def test_upload_request(monkeypatch, tmp_path):
    """The aiplatform call the upload step makes (the Model Registry itself is not reachable from tests)."""
    aiplatform = pytest.importorskip("google.cloud.aiplatform")
    calls = {}

    class Uploaded:
        resource_name = "projects/p/locations/europe-west4/models/123"
        version_id = "1"

    monkeypatch.setattr(aiplatform, "init", lambda **kw: calls.setdefault("init", kw))
    monkeypatch.setattr(aiplatform.Model, "upload", lambda **kw: calls.setdefault("upload", kw) and Uploaded)
    model = dsl.Model(uri="gs://bucket/root/export-model/model/", metadata={})
    out = dsl.Artifact(uri=str(tmp_path / "vm"), metadata={})
    upload_model.python_func(model=model, display_name="bs", project="p", location="europe-west4",
                             serving_image="img:1", macro_f1=0.71234, vertex_model=out)
    assert calls["init"] == {"project": "p", "location": "europe-west4"}
    request = calls["upload"]
    assert request["artifact_uri"] == "gs://bucket/root/export-model/model/merged"
    assert request["display_name"] == "bs" and request["serving_container_image_uri"] == "img:1"
    assert "0.7123" in request["description"]
    assert out.metadata["resourceName"] == Uploaded.resource_name and out.metadata["test_macro_f1"] == 0.71234
    assert Path(out.uri).name == "123"
