"""The smoke pipeline: prepare -> base-model -> tokenize -> smoke, a user's first minutes on a TPU.

    python pipelines/submit.py --smoke --project ... --staging-bucket gs://... [--param smoke_steps=50]

The smoke step is a custom job on the training machine (`vertex.train.machine`) in the training image: about
50 optimizer steps of LoRA and of full fine-tuning with the real training code, then a diagnostics artifact
(components/smoke.py). It is never served from the step cache.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown

from components.config import Config
from components.lineage import git_commit, step_environment
from components.smoke import DEFAULT_STEPS, smoke
from pipelines import vertex as on_vertex
from pipelines.pipeline import Target, _with_image, data_steps, step_components


class SmokeOutputs(NamedTuple):
    diagnostics: Artifact
    report: Markdown


def smoke_component(cfg: Config, target: Target, commit: str):
    """The smoke component: as defined locally; on Vertex a custom job in the training image."""
    if target == "local":
        return smoke
    op = _with_image(smoke, cfg.pipeline.train_image)
    return on_vertex.custom_job_component(op, cfg, step_environment(cfg.pipeline.train_image, commit))


def build_smoke_pipeline(cfg: Config, target: Target = "vertex"):
    """The smoke pipeline for `cfg` and `target`."""
    commit = git_commit()
    ops = step_components(cfg, target, commit)
    smoke_op = smoke_component(cfg, target, commit)
    vertex = target == "vertex"

    @dsl.pipeline(name=f"{cfg.pipeline.name}-smoke",
                  description="A short training of both modes on the training machine, with device diagnostics.")
    def smoke_pipeline(
        data_uri: str = cfg.data.uri,
        base_model: str = cfg.model.name,
        seed: int = cfg.train.seed,
        smoke_steps: int = DEFAULT_STEPS,
    ) -> SmokeOutputs:
        prep, base, tok = data_steps(ops, cfg, target, data_uri, base_model, seed)
        job_args = on_vertex.job_arguments(smoke_op, cfg, "smoke") if vertex else {}
        run = smoke_op(config_json=cfg.to_json(), steps=smoke_steps, base_model=base.outputs["model"],
                       tokenized=tok.outputs["tokenized"], **job_args)
        if vertex:
            on_vertex.configure_tasks(cfg, commit, cpu_tasks=(prep, base, tok), train_tasks=(run,))
        else:
            for task in (prep, base, tok, run):
                for key, value in step_environment(None, commit).items():
                    task.set_env_variable(key, value)
        run.set_caching_options(False)  # a diagnostic: it measures this run
        return SmokeOutputs(diagnostics=run.outputs["diagnostics"], report=run.outputs["report"])

    return smoke_pipeline
