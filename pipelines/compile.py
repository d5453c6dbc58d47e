"""Compile the pipeline to a KFP IR YAML.

python pipelines/compile.py                                   # configs/banglasenti.yaml, vertex target
python pipelines/compile.py --config configs/local.yaml --target local --output local.pipeline.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from banglasenti.config.schema import CONFIG_DIR, load_config
from banglasenti.runtime.command_line import base_parser, run_cli
from pipelines.pipeline import TARGETS, Target, build_pipeline


def compile_pipeline(
    config_path: str | Path, output: str | Path, target: Target = "vertex", overrides: list[str] | None = None
) -> Path:
    """Write the compiled pipeline for `config_path` to `output`."""
    cfg = load_config(config_path, overrides or [])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(cfg, target), package_path=str(output))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__, str(CONFIG_DIR / "banglasenti.yaml"), "experiment YAML")
    parser.add_argument("--output", default="pipeline.yaml", help="where to write the compiled pipeline")
    parser.add_argument("--target", choices=TARGETS, default="vertex", help="where the pipeline will run")

    def work(args: argparse.Namespace) -> None:
        print(f"wrote {compile_pipeline(args.config, args.output, args.target, args.overrides)}")

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
