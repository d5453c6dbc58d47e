"""Run the LoRA sweep locally, or compile it for Vertex AI (the pipeline: pipelines/sweep_pipeline.py).

python pipelines/sweep.py --run-local                      # local runner, configs/local.yaml (~3 min, 2 cores)
python pipelines/sweep.py --run-local --verbose            # kfp's whole log instead of a line per step
python pipelines/sweep.py --run-local --set train.epochs=2 --set 'sweep.r=[4, 8]'
python pipelines/sweep.py --config configs/banglasenti.yaml --output sweep.yaml   # compile for Vertex AI
"""

import argparse
from pathlib import Path
from typing import Any

from banglasenti.config.schema import CONFIG_DIR, Config, load_config
from banglasenti.runtime.command_line import base_parser, run_cli
from pipelines.sweep_pipeline import build_sweep_pipeline


def run_sweep_local(cfg: Config, pipeline_root: str | Path | None = None) -> dict[str, Any]:
    """Run the sweep with kfp.local's SubprocessRunner in this environment; return the report paths."""
    from banglasenti.local.runners import init_local_runner

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
    from banglasenti.local.run_log import run_logged
    from banglasenti.local.runners import browsable_html, macro_f1_line

    root = Path(args.pipeline_root or cfg.pipeline.local_root).resolve()
    result = run_logged(lambda: run_sweep_local(cfg, root), root, args.verbose)
    if result is None:
        return 1
    print(result["leaderboard"].read_text(encoding="utf-8"))
    print(macro_f1_line(result["metrics"], ("lora", "baseline", "reference")))
    print(f"Leaderboard: {result['leaderboard']}")
    print(f"Comparison report: {result['report']}")
    print(f"HTML report: {browsable_html(result['html_report'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
