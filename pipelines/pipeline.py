"""The pipeline factory: one DAG, built for a target (`local` runner or `vertex`).

prepare -> base-model -> tokenize -> {train-lora, train-baseline} -> evaluate. The knobs a user changes per
run are pipeline parameters whose defaults come from the config; everything else is compiled in as the
config's JSON. Every step gets the git commit the pipeline was compiled from (and on Vertex its image) in its
environment for the artifacts' lineage (components/lineage.py); pipelines/vertex.py holds the vertex settings.
"""


from typing import Literal, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics

from components.base_model import base_model as base_model_op
from components.config import Config
from components.evaluate import evaluate
from components.export import export_model
from components.lineage import git_commit, step_environment
from components.prepare import prepare
from components.tokenization import tokenize
from components.train import train_baseline, train_lora
from pipelines import vertex as on_vertex

Target = Literal["local", "vertex"]
TARGETS: tuple[str, ...] = ("local", "vertex")
TASKS = ("prepare", "base-model", "tokenize", "train-lora", "train-baseline", "evaluate", "export-model")


def _with_image(component, image: str):
    """The same lightweight component, running in `image` (which has the project and kfp installed)."""
    return dsl.component(component.python_func, base_image=image, install_kfp_package=False)


def step_image(cfg: Config, name: str) -> str:
    return cfg.pipeline.train_image if name.startswith("train") else cfg.pipeline.cpu_image


def step_components(cfg: Config, target: Target, commit: str = "") -> dict[str, object]:
    """The components of each step for a target: as defined for the local runner, in our images on Vertex,
    where the training steps are custom jobs."""
    steps = {"prepare": prepare, "base_model": base_model_op, "tokenize": tokenize, "train_lora": train_lora,
             "train_baseline": train_baseline, "evaluate": evaluate, "export": export_model}
    if target == "local":
        return steps
    if target != "vertex":
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    ops = {name: _with_image(comp, step_image(cfg, name)) for name, comp in steps.items()}
    for name in ("train_lora", "train_baseline"):
        ops[name] = on_vertex.custom_job_component(ops[name], cfg, step_environment(step_image(cfg, name), commit))
    return ops


class PipelineOutputs(NamedTuple):
    report: Markdown
    metrics: Metrics
    data_report: Markdown
    html_report: HTML


def data_steps(ops: dict[str, object], cfg: Config, target: Target, data_uri, base_model, seed):
    """prepare, base-model and tokenize inside a pipeline function (with the raw-data importer for gs:// data on
    Vertex AI); returns the three tasks."""
    raw = {}
    if target == "vertex" and cfg.data.uri.startswith("gs://"):
        raw = {"raw_data": on_vertex.import_raw_data(cfg, data_uri).output}
    config_json = cfg.to_json()
    prep = ops["prepare"](config_json=config_json, data_uri=data_uri, seed=seed, **raw)
    base = ops["base_model"](config_json=config_json, model_name=base_model, train=prep.outputs["train"])
    tok = ops["tokenize"](config_json=config_json, base_model=base.outputs["model"],
                          train=prep.outputs["train"], val=prep.outputs["val"], test=prep.outputs["test"])
    return prep, base, tok


def build_pipeline(cfg: Config, target: Target = "local"):
    """Build the KFP pipeline for `cfg` and `target`."""
    commit = git_commit()
    ops = step_components(cfg, target, commit)
    config_json = cfg.to_json()
    vertex = target == "vertex"

    def job_args(name: str) -> dict:
        return on_vertex.job_arguments(ops[name.replace("-", "_")], cfg, name) if vertex else {}

    @dsl.pipeline(name=cfg.pipeline.name,
                  description="Bengali sentiment: LoRA vs full fine-tuning of an XLM-R encoder.")
    def banglasenti_pipeline(
        data_uri: str = cfg.data.uri,
        base_model: str = cfg.model.name,
        lora_r: int = cfg.lora.r,
        lora_alpha: int = cfg.lora.alpha,
        lora_target_modules: list = list(cfg.lora.target_modules),  # noqa: B006 - KFP reads the default
        lora_learning_rate: float = cfg.train.lora_learning_rate,
        baseline_learning_rate: float = cfg.train.baseline_learning_rate,
        epochs: int = cfg.train.epochs,
        batch_size: int = cfg.train.batch_size,
        seed: int = cfg.train.seed,
    ) -> PipelineOutputs:
        prep, base, tok = data_steps(ops, cfg, target, data_uri, base_model, seed)
        shared = {"config_json": config_json, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                  "base_model": base.outputs["model"], "tokenized": tok.outputs["tokenized"]}
        lora = ops["train_lora"](lora_r=lora_r, lora_alpha=lora_alpha, lora_target_modules=lora_target_modules,
                                 learning_rate=lora_learning_rate, **shared, **job_args("train-lora"))
        full = ops["train_baseline"](learning_rate=baseline_learning_rate, **shared, **job_args("train-baseline"))
        evaluation = ops["evaluate"](config_json=config_json, base_model=base.outputs["model"],
                                     tokenized=tok.outputs["tokenized"], lora_model=lora.outputs["model"],
                                     baseline_model=full.outputs["model"], train=prep.outputs["train"],
                                     val=prep.outputs["val"], test=prep.outputs["test"],
                                     data_report=prep.outputs["report"])
        export = ops["export"](base_model=base.outputs["model"], lora_model=lora.outputs["model"])
        if vertex:
            on_vertex.configure_tasks(cfg, commit, cpu_tasks=(prep, base, tok, evaluation, export),
                                      train_tasks=(lora, full))
            if cfg.registry.upload:  # optional Model Registry upload (pipelines/registry.py)
                from pipelines.registry import add_registry_upload

                add_registry_upload(cfg, evaluation, export)
        else:
            for task in (prep, base, tok, lora, full, evaluation, export):
                for key, value in step_environment(None, commit).items():
                    task.set_env_variable(key, value)
        return PipelineOutputs(report=evaluation.outputs["report"], metrics=evaluation.outputs["metrics"],
                               data_report=prep.outputs["report"], html_report=evaluation.outputs["html_report"])

    return banglasenti_pipeline
