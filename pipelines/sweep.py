"""The LoRA sweep pipeline: train-lora over a grid of (r, alpha, target modules), best trial by val macro-F1.

    python pipelines/sweep.py --run-local                      # local runner, configs/local.yaml (~3 min, 2 cores)
    python pipelines/sweep.py --run-local --verbose            # kfp's whole log instead of a line per step
    python pipelines/sweep.py --run-local --set train.epochs=2 --set 'sweep.r=[4, 8]'
    python pipelines/sweep.py --config configs/banglasenti.yaml --output sweep.yaml   # compile for Vertex AI

prepare -> base-model -> tokenize -> ParallelFor(grid){train-lora} -> select-best-trial -> evaluate (against
train-baseline and the TF-IDF reference) and export-model. The grid (`sweep.*` in the config, expanded by
`SweepConfig.grid()`) is the pipeline parameter `sweep_grid`, so a submission can replace it. At most
`sweep.parallelism` trials train at once (default 1: with train-baseline, two TPU v3-8 jobs, 16 cores; see
docs/vertex.md for raising it). The KFP local runner (kfp 2.17) runs ParallelFor and dsl.Collected.
"""

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Markdown, Metrics

from components.cli import base_parser, run_cli
from components.config import CONFIG_DIR, Config, load_config
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
            lora = dag.task(
                "train_lora",
                job=TRIAL_JOB,
                lora_r=trial.r,
                lora_alpha=trial.alpha,
                lora_target_modules=trial.target_modules,
                learning_rate=p["lora_learning_rate"],
                **shared,
            )
        best = dag.task("select_best_trial", trials=dsl.Collected(lora.outputs["model"]))
        full = dag.task("train_baseline", learning_rate=p["baseline_learning_rate"], **shared)
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


def run_sweep_local(cfg: Config, pipeline_root: str | Path | None = None) -> dict[str, Any]:
    """Run the sweep with kfp.local's SubprocessRunner in this environment; return the report paths."""
    from pipelines.run_local import init_local_runner

    init_local_runner(cfg, pipeline_root)  # gcsfuse semantics with BANGLASENTI_GCSFUSE_SEMANTICS=1
    task = build_sweep_pipeline(cfg, "local")()
    return {name: Path(task.outputs[name].path) for name in ("report", "html_report", "leaderboard")} | {
        "metrics": task.outputs["metrics"].metadata
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(
        __doc__, config_help="experiment YAML (default: local.yaml with --run-local, else banglasenti.yaml)"
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run-local", action="store_true", help="run with the KFP local runner")
    mode.add_argument("--output", help="compile for Vertex AI into this YAML file")
    parser.add_argument(
        "--pipeline-root", help="local runs: where artifacts go (default: the config's pipeline.local_root)"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="local runs: show kfp's whole log (executor inputs, outputs) instead of a line per step",
    )
    return run_cli(parser, sweep_command, argv)


def sweep_command(args: argparse.Namespace) -> int:
    """Compile the sweep (--output) or run it locally (--run-local) and print its leaderboard and reports."""
    from kfp import compiler

    default = "local.yaml" if args.run_local else "banglasenti.yaml"
    cfg = load_config(args.config or CONFIG_DIR / default, args.overrides)
    if args.output:
        compiler.Compiler().compile(build_sweep_pipeline(cfg, "vertex"), package_path=args.output)
        print(f"wrote {args.output}")
        return 0
    from pipelines.run_local import browsable_html, run_logged

    root = Path(args.pipeline_root or cfg.pipeline.local_root).resolve()
    result = run_logged(lambda: run_sweep_local(cfg, root), root, args.verbose)
    if result is None:
        return 1
    print(result["leaderboard"].read_text(encoding="utf-8"))
    metrics = result["metrics"]
    print(
        "Test macro-F1: "
        + ", ".join(
            f"{name} {metrics[f'{name}_test_macro_f1']:.4f}"
            for name in ("lora", "baseline", "reference")
            if f"{name}_test_macro_f1" in metrics
        )
    )
    print(f"Leaderboard: {result['leaderboard']}")
    print(f"Comparison report: {result['report']}")
    print(f"HTML report: {browsable_html(result['html_report'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
