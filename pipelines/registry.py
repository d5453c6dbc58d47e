"""The optional Model Registry upload on the vertex target, gated by the LoRA test macro-F1.

    evaluate ──► read-metric (lora_test_macro_f1) ──► dsl.If(>= registry.min_macro_f1) ──► upload-model
    export-model ───────────────────────────────────────────────────────────────────────┘

Enabled with `registry.upload: true`; called inside the pipeline function after evaluate and export exist.
"""

from kfp import dsl

from components.config import Config
from components.registry import read_metric, upload_model

GATE_METRIC = "lora_test_macro_f1"


def add_registry_upload(cfg: Config, evaluation, export):
    """Add the gated upload to the pipeline being defined; returns the upload task (runs only past the gate)."""
    image = cfg.pipeline.cpu_image
    read = dsl.component(read_metric.python_func, base_image=image, install_kfp_package=False)
    upload = dsl.component(upload_model.python_func, base_image=image, install_kfp_package=False)
    score = read(metrics=evaluation.outputs["metrics"], key=GATE_METRIC)
    r = cfg.registry
    with dsl.If(score.output >= r.min_macro_f1, name="lora-macro-f1-gate"):
        return upload(model=export.outputs["model"], display_name=r.display_name, project=r.project,
                      location=r.location, serving_image=r.serving_image, macro_f1=score.output)
