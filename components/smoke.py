"""smoke: a short training of both modes on the training machine, and a diagnostics artifact about it.

    python -m components.smoke --base-model runs/base --tokenized runs/tok --output-dir runs/smoke [--steps 50]

Runs `--steps` optimizer steps (then one evaluation) of LoRA and of full fine-tuning with the real training code
(banglasenti/training/runner.py) and writes `diagnostics.json` and `diagnostics.md`: device kind and count, SPMD mesh, a
training batch's sharding, parameter and optimizer-state dtypes, graphs compiled, compile and step times, the
persistent compilation cache's hits and misses, and torch_xla's metrics report. On Vertex AI it is the `smoke`
pipeline (`python pipelines/submit.py --smoke ...`, pipelines/smoke_pipeline.py), a custom job on the training machine.
"""

from pathlib import Path

from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from banglasenti.runtime.kfp_support import lightweight_component
from banglasenti.training.smoke_run import DEFAULT_STEPS, smoke_step


@lightweight_component
def smoke(
    config_json: str,
    steps: int,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    diagnostics: Output[Artifact],
    report: Output[Markdown],
):
    """A short training of both modes on the training machine, with a diagnostics artifact."""
    from banglasenti.config.schema import config_from_json
    from banglasenti.training.smoke_run import smoke_step

    smoke_step(config_from_json(config_json), steps, base_model.path, tokenized.path, diagnostics.path, report.path)


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory")
    parser.add_argument("--tokenized", required=True, help="directory of tokenized splits")
    parser.add_argument("--output-dir", required=True, help="directory for diagnostics.json and diagnostics.md")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer steps per mode")
    parser.add_argument(
        "--mode",
        dest="modes",
        action="append",
        choices=("lora", "baseline"),
        help="train only this mode (repeatable; default: both)",
    )

    def work(args) -> None:
        cfg = load_cli_config(args)
        out = Path(args.output_dir)
        smoke_step(
            cfg,
            args.steps,
            args.base_model,
            args.tokenized,
            str(out / "diagnostics.json"),
            str(out / "diagnostics.md"),
            tuple(args.modes or ("lora", "baseline")),
        )
        print(out / "diagnostics.md")

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
