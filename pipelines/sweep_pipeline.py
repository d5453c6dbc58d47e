"""The LoRA sweep pipeline: train-lora over a grid of (r, alpha, target modules), best trial by val macro-F1.

prepare -> base-model -> tokenize -> ParallelFor(grid){train-lora} -> select-best-trial -> evaluate (against
train-baseline and the TF-IDF reference) and export-model. The grid (`sweep.*` in the config, expanded by
`SweepConfig.grid()`) is the pipeline parameter `sweep_grid`, so a submission can replace it. At most
`sweep.parallelism` trials train at once (default 1: with train-baseline, two TPU v3-8 jobs, 16 cores; see
docs/vertex.md for raising it). The KFP local runner (kfp 2.17) runs ParallelFor and dsl.Collected.
"""

from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics

from banglasenti.config.schema import Config
from pipelines.pipeline import Dag, Target, run_parameter_pipeline

SWEEP_TASKS = (
    "importer",
    "prepare",
    "base-model",
    "tokenize",
    "for-loop-1",
    "select-best-trial",
    "train-baseline",
    "evaluate",
    "export-model",
)


TRIAL_JOB = "train-lora-trial"  # the trials' custom jobs share one output directory (checkpoints keyed by trial)


def build_sweep_pipeline(cfg: Config, target: Target = "local"):
    """The sweep pipeline for `cfg` and `target` (the same steps, made and configured as in the main pipeline)."""

    def body(dag: Dag, p: dict[str, Any]) -> SweepOutputs:
        prep, base, tok = dag.data_steps(p)
        shared = dag.training_inputs(p, base, tok)
        with dsl.ParallelFor(p["sweep_grid"], parallelism=cfg.sweep.parallelism or None) as trial:
            lora = dag.train_lora(p, shared, trial.r, trial.alpha, trial.target_modules, job=TRIAL_JOB)
        best = dag.task("select_best_trial", trials=dsl.Collected(lora.outputs["model"]))
        full = dag.train_baseline(p, shared)
        evaluation = dag.evaluate(prep, base, tok, best.outputs["best_model"], full.outputs["model"])
        dag.export_model(prep, base, best.outputs["best_model"], full.outputs["model"], evaluation)
        return SweepOutputs(
            report=evaluation.outputs["report"],
            html_report=evaluation.outputs["html_report"],
            leaderboard=best.outputs["leaderboard"],
            metrics=evaluation.outputs["metrics"],
        )

    return run_parameter_pipeline(
        cfg,
        target,
        "sweep",
        f"{cfg.pipeline.name}-lora-sweep",
        "Bengali sentiment: a LoRA (r, alpha, target modules) sweep against full fine-tuning.",
        SweepOutputs,
        body,
    )


class SweepOutputs(NamedTuple):
    report: Markdown
    html_report: HTML
    leaderboard: Markdown
    metrics: Metrics
