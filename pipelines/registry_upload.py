"""The optional Model Registry steps on the vertex target, gated by the exported model's test macro-F1.

    evaluate ─┬► selected-macro-f1 ──► dsl.If(>= registry.min_macro_f1) ──► upload-model ──► [model-batch-predict]
    export-model ─┘ (metadata `selected`: lora or baseline)                  (new version; default if it wins)

Enabled with `registry.upload: true`; `registry.batch_predict_source` adds google-cloud-pipeline-components'
ModelBatchPredictOp, which runs a batch prediction job of the new version. Called inside the pipeline function
after evaluate and export exist.
"""

from kfp import dsl

from banglasenti.config.schema import Config

BATCH_PREDICTIONS_DIR = "batch-predictions"


def registry_location(cfg: Config) -> str:
    """Region of the Model Registry: `registry.location`, else the run's `vertex.region`."""
    location = cfg.registry.location or cfg.vertex.region
    parent = cfg.registry.parent_model
    if parent and parent.split("/")[3] != location:
        raise ValueError(
            f"registry.parent_model {parent} is not in the registry's region {location} "
            "(registry.location, else vertex.region)"
        )
    return location


def registry_project(cfg: Config) -> str:
    """`registry.project`, else the placeholder Vertex AI fills with the pipeline job's project."""
    from banglasenti.runtime.private_api import private_attr

    return cfg.registry.project or private_attr(
        "google_cloud_pipeline_components._placeholders", "PROJECT_ID_PLACEHOLDER"
    )


def batch_predict_output(cfg: Config) -> str:
    """gs:// prefix of the batch predictions: `registry.batch_predict_output`, else under the pipeline root."""
    if cfg.registry.batch_predict_output:
        return cfg.registry.batch_predict_output
    root = cfg.vertex.effective_pipeline_root()
    if not root:
        raise ValueError("registry.batch_predict_output: set it, or vertex.pipeline_root / vertex.staging_bucket")
    return f"{root.rstrip('/')}/{BATCH_PREDICTIONS_DIR}"


def add_registry_upload(dag, evaluation, export):
    """Add the gated upload (and batch prediction when configured) to the pipeline being defined (tasks made by
    `dag`, a pipelines.pipeline.Dag); returns the upload task (runs only past the gate)."""
    cfg, r = dag.cfg, dag.cfg.registry
    location, project = registry_location(cfg), registry_project(cfg)
    score = dag.task("selected_macro_f1", metrics=evaluation.outputs["metrics"], model=export.outputs["model"])
    with dsl.If(score.output >= r.min_macro_f1, name="macro-f1-gate"):
        upload = dag.task(
            "upload_model",
            model=export.outputs["model"],
            metrics=evaluation.outputs["metrics"],
            lora_confusion=evaluation.outputs["lora_confusion"],
            baseline_confusion=evaluation.outputs["baseline_confusion"],
            display_name=r.display_name,
            parent_model=r.parent_model,
            project=project,
            location=location,
            serving_image=cfg.pipeline.serve_image,
        )
        if r.batch_predict_source:
            add_batch_predict(cfg, upload, location)
    return upload


def add_batch_predict(cfg: Config, upload, location: str):
    """google-cloud-pipeline-components' batch prediction job of the uploaded version over the JSONL source."""
    from google_cloud_pipeline_components.v1.batch_predict_job import ModelBatchPredictOp

    r = cfg.registry
    args = {"project": r.project} if r.project else {}  # else the op's default: the pipeline job's project
    task = ModelBatchPredictOp(
        job_display_name=f"{r.display_name}-batch-predict",
        model=upload.outputs["vertex_model"],
        location=location,
        instances_format="jsonl",
        predictions_format="jsonl",
        gcs_source_uris=[r.batch_predict_source],
        gcs_destination_output_uri_prefix=batch_predict_output(cfg),
        machine_type=r.batch_predict_machine_type,
        starting_replica_count=1,
        max_replica_count=r.batch_predict_max_replicas,
        labels=dict(cfg.vertex.labels),
        service_account=cfg.vertex.service_account,
        **args,
    )
    task.set_caching_options(cfg.vertex.enable_caching)
    return task
