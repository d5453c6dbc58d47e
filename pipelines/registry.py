"""The optional Model Registry upload on the vertex target, gated by the LoRA test macro-F1.

    evaluate ──► read-metric (lora_test_macro_f1) ──► dsl.If(>= registry.min_macro_f1) ──► upload-model
    export-model ───────────────────────────────────────────────────────────────────────┘

Enabled with `registry.upload: true`; called inside the pipeline function after evaluate and export exist.
"""

from kfp import dsl

GATE_METRIC = "lora_test_macro_f1"


def add_registry_upload(dag, evaluation, export):
    """Add the gated upload to the pipeline being defined (tasks made by `dag`, a pipelines.pipeline.Dag);
    returns the upload task (runs only past the gate)."""
    r = dag.cfg.registry
    score = dag.task("read_metric", metrics=evaluation.outputs["metrics"], key=GATE_METRIC)
    with dsl.If(score.output >= r.min_macro_f1, name="lora-macro-f1-gate"):
        return dag.task("upload_model", model=export.outputs["model"], display_name=r.display_name,
                        project=r.project, location=r.location, serving_image=r.serving_image, macro_f1=score.output)
