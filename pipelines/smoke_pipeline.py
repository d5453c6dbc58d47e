"""The smoke pipeline: importer -> prepare -> base-model -> tokenize -> smoke, a user's first minutes on a TPU.

    python pipelines/submit.py --smoke --project ... --staging-bucket gs://... [--param smoke_steps=50]

The smoke step is a custom job on the training machine (`vertex.train.machine`) in the training image: about
50 optimizer steps of LoRA and of full fine-tuning with the real training code, then a diagnostics artifact
(components/smoke.py). Its tasks are made and configured by the same `Dag` as every other pipeline; the smoke
step is never served from the step cache.
"""

from typing import Any, NamedTuple

from kfp.dsl import Artifact, Markdown

from banglasenti.config.parameters import SMOKE
from banglasenti.config.schema import Config
from pipelines.pipeline import Dag, Target, run_parameter_pipeline

UNCACHED_TASKS = frozenset({"smoke"})  # never reused from an earlier run, whatever --cache says


def build_smoke_pipeline(cfg: Config, target: Target = "vertex"):
    """The smoke pipeline for `cfg` and `target`."""

    def body(dag: Dag, p: dict[str, Any]) -> SmokeOutputs:
        _, base, tok = dag.data_steps(p)
        run = dag.task(
            "smoke",
            config_json=dag.config_json,
            steps=p["smoke_steps"],
            base_model=base.outputs["model"],
            tokenized=tok.outputs["tokenized"],
        )
        run.set_caching_options(False)  # a diagnostic: it measures this run (submit.py --cache keeps it so)
        return SmokeOutputs(diagnostics=run.outputs["diagnostics"], report=run.outputs["report"])

    return run_parameter_pipeline(
        cfg,
        target,
        SMOKE,
        f"{cfg.pipeline.name}-smoke",
        "A short training of both modes on the training machine, with device diagnostics.",
        SmokeOutputs,
        body,
    )


class SmokeOutputs(NamedTuple):
    diagnostics: Artifact
    report: Markdown
