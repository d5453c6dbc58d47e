"""The pipeline factory: one DAG, built for a target (`local` runner or `vertex`).

importer (raw data) -> prepare -> base-model -> tokenize -> {train-lora, train-baseline}
-> evaluate, export-model. The knobs a user changes per run are pipeline parameters (banglasenti/config/parameters.py)
whose defaults come from the config; everything else is compiled in as the config's JSON.

Every pipeline variant (this one, pipelines/sweep.py, the registry upload of pipelines/registry_upload.py) makes its
tasks through one `Dag`, which configures each task it makes: the git commit the pipeline was compiled from
(and on Vertex the image) in its environment for the artifacts' lineage (banglasenti/storage/lineage.py); on Vertex
also machine limits, retries and caching (pipelines/vertex.py).
"""

import inspect
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics

from banglasenti.config.parameters import pipeline_parameters
from banglasenti.config.schema import Config
from banglasenti.storage.lineage import git_commit, step_environment
from components.base_model import base_model as base_model_op
from components.evaluate import evaluate
from components.export_model import export_model
from components.prepare import prepare
from components.select_best_trial import select_best_trial
from components.smoke import smoke
from components.tokenization import tokenize
from components.train import train_baseline, train_lora
from pipelines import vertex as on_vertex

Target = Literal["local", "docker", "vertex"]
TARGETS: tuple[str, ...] = ("local", "docker", "vertex")
# The local runner in the images (pipelines/run_local.py --runner docker): the TPU image trains on XLA's CPU backend.
DOCKER_TRAIN_ENV = {"PJRT_DEVICE": "CPU"}
TASKS = ("prepare", "base-model", "tokenize", "train-lora", "train-baseline", "evaluate", "export-model")
TRAIN_STEPS = ("train_lora", "train_baseline", "smoke")  # custom jobs on the training machine


def _with_image(component, image: str):
    """The same lightweight component, running in `image` (which has the project and kfp installed)."""
    return dsl.component(component.python_func, base_image=image, install_kfp_package=False)


def step_image(cfg: Config, name: str) -> str:
    return cfg.pipeline.train_image if name in TRAIN_STEPS else cfg.pipeline.cpu_image


def step_components(cfg: Config, target: Target, commit: str = "") -> dict[str, Any]:
    """The components of each step for a target: as defined for the local runner, in our images for the local
    runner in containers (`docker`) and on Vertex, where the training steps are custom jobs."""
    steps = {
        "prepare": prepare,
        "base_model": base_model_op,
        "tokenize": tokenize,
        "train_lora": train_lora,
        "train_baseline": train_baseline,
        "evaluate": evaluate,
        "export_model": export_model,
        "select_best_trial": select_best_trial,
        "smoke": smoke,
    }
    if cfg.registry.upload:  # google-cloud-pipeline-components (the vertex extra) only when asked
        from components.selected_macro_f1 import selected_macro_f1
        from components.upload_model import upload_model

        steps |= {"selected_macro_f1": selected_macro_f1, "upload_model": upload_model}
    if target == "local":
        return steps
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    ops = {name: _with_image(comp, step_image(cfg, name)) for name, comp in steps.items()}
    if target == "docker":
        return ops
    for name in TRAIN_STEPS:
        env = step_environment(step_image(cfg, name), commit)
        timeout = cfg.vertex.train.smoke_timeout if name == "smoke" else None
        ops[name] = on_vertex.custom_job_component(ops[name], cfg, env, timeout)
    return ops


class Dag:
    """Makes the tasks of a pipeline being defined, each configured the same way for the target."""

    def __init__(self, cfg: Config, target: Target):
        self.cfg, self.target, self.commit = cfg, target, git_commit()
        self.ops = step_components(cfg, target, self.commit)
        self.config_json = cfg.to_json()
        self.vertex = target == "vertex"

    def task(self, step: str, job: str | None = None, **args: Any):
        """A task of `step` with `args`; a training step's custom job writes under the directory of `job`
        (default: the step's task name)."""
        op = self.ops[step]
        if self.vertex and step in TRAIN_STEPS:
            args |= on_vertex.job_arguments(op, self.cfg, job or step.replace("_", "-"))
        kind = "cpu" if step not in TRAIN_STEPS else "smoke" if step == "smoke" else "train"
        return self.configure(op(**args), kind)

    def configure(self, task, kind: str):
        if self.vertex:
            on_vertex.configure_task(self.cfg, self.commit, task, kind)
        elif kind != "importer":
            on_train_image = kind in ("train", "smoke")
            image = None if self.target == "local" else step_image(self.cfg, "train_lora" if on_train_image else "")
            env = step_environment(image, self.commit)
            if self.target == "docker" and on_train_image:
                env |= DOCKER_TRAIN_ENV
            for key, value in env.items():
                task.set_env_variable(key, value)
        return task

    def data_steps(self, p: dict[str, Any]) -> tuple[Any, Any, Any]:
        """importer (the raw data as a Dataset node of the lineage graph, whatever the run's `data_uri`), prepare,
        base-model and tokenize; returns the last three tasks."""
        raw = self.configure(on_vertex.import_raw_data(self.cfg, p["data_uri"]), "importer")
        prep = self.task(
            "prepare", config_json=self.config_json, data_uri=p["data_uri"], seed=p["data_seed"], raw_data=raw.output
        )
        base = self.task(
            "base_model", config_json=self.config_json, model_name=p["model_name"], train=prep.outputs["train"]
        )
        tok = self.task(
            "tokenize",
            config_json=self.config_json,
            base_model=base.outputs["model"],
            train=prep.outputs["train"],
            val=prep.outputs["val"],
            test=prep.outputs["test"],
        )
        return prep, base, tok

    def training_inputs(self, p: dict[str, Any], base, tok) -> dict[str, Any]:
        """The arguments both training steps take from the run parameters and the data steps."""
        return {
            "config_json": self.config_json,
            "epochs": p["epochs"],
            "batch_size": p["batch_size"],
            "seed": p["seed"],
            "base_model": base.outputs["model"],
            "tokenized": tok.outputs["tokenized"],
        }

    def train_lora(self, p: dict[str, Any], shared: dict[str, Any], r, alpha, target_modules, job: str | None = None):
        """A train-lora task with these LoRA settings (run parameters, or a sweep trial's)."""
        return self.task(
            "train_lora",
            job=job,
            lora_r=r,
            lora_alpha=alpha,
            lora_target_modules=target_modules,
            learning_rate=p["lora_learning_rate"],
            **shared,
        )

    def train_baseline(self, p: dict[str, Any], shared: dict[str, Any]):
        return self.task("train_baseline", learning_rate=p["baseline_learning_rate"], **shared)

    def evaluate(self, prep, base, tok, lora_model, baseline_model):
        return self.task(
            "evaluate",
            config_json=self.config_json,
            base_model=base.outputs["model"],
            tokenized=tok.outputs["tokenized"],
            lora_model=lora_model,
            baseline_model=baseline_model,
            train=prep.outputs["train"],
            val=prep.outputs["val"],
            test=prep.outputs["test"],
            data_report=prep.outputs["report"],
        )

    def export_model(self, prep, base, lora_model, baseline_model, evaluation):
        """export-model: the served model chosen from the two trained ones, with its model card."""
        return self.task(
            "export_model",
            config_json=self.config_json,
            base_model=base.outputs["model"],
            lora_model=lora_model,
            baseline_model=baseline_model,
            metrics=evaluation.outputs["metrics"],
            data_report=prep.outputs["report"],
            test=prep.outputs["test"],
        )


def run_parameter_pipeline(
    cfg: Config,
    target: Target,
    pipeline: str,
    name: str,
    description: str,
    outputs: type,
    body: Callable[[Dag, dict[str, Any]], Any],
):
    """A KFP pipeline whose signature is the run parameters of `pipeline` (banglasenti/config/parameters.py) with the
    config's values as defaults; `body` gets a Dag for `target` and the parameters as a dict."""
    signature = inspect.Signature(
        [
            inspect.Parameter(
                p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default(cfg), annotation=p.kind
            )
            for p in pipeline_parameters(pipeline)
        ],
        return_annotation=outputs,
    )

    def pipeline_func(*args: Any, **kwargs: Any):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(Dag(cfg, target), dict(bound.arguments))

    pipeline_func.__signature__ = signature  # type: ignore[attr-defined]
    pipeline_func.__name__ = name.replace("-", "_")
    return dsl.pipeline(name=name, description=description)(pipeline_func)


def build_pipeline(cfg: Config, target: Target = "local"):
    """Build the KFP pipeline for `cfg` and `target`."""

    def body(dag: Dag, p: dict[str, Any]) -> PipelineOutputs:
        prep, base, tok = dag.data_steps(p)
        shared = dag.training_inputs(p, base, tok)
        lora = dag.train_lora(p, shared, p["lora_r"], p["lora_alpha"], p["lora_target_modules"])
        full = dag.train_baseline(p, shared)
        evaluation = dag.evaluate(prep, base, tok, lora.outputs["model"], full.outputs["model"])
        export = dag.export_model(prep, base, lora.outputs["model"], full.outputs["model"], evaluation)
        if dag.vertex and cfg.registry.upload:  # optional Model Registry upload (pipelines/registry_upload.py)
            from pipelines.registry_upload import add_registry_upload

            add_registry_upload(dag, evaluation, export)
        return PipelineOutputs(
            report=evaluation.outputs["report"],
            metrics=evaluation.outputs["metrics"],
            data_report=prep.outputs["report"],
            html_report=evaluation.outputs["html_report"],
        )

    return run_parameter_pipeline(
        cfg,
        target,
        "main",
        cfg.pipeline.name,
        "Bengali sentiment: LoRA vs full fine-tuning of an XLM-R encoder.",
        PipelineOutputs,
        body,
    )


class PipelineOutputs(NamedTuple):
    report: Markdown
    metrics: Metrics
    data_report: Markdown
    html_report: HTML
