"""Run the whole pipeline on this machine with the KFP local runner: in subprocesses, or in the images.

    python pipelines/run_local.py                                  # configs/local.yaml: sample data, tiny base
    python pipelines/run_local.py --set train.epochs=2 --set data.uri=my_data.csv
    python pipelines/run_local.py --config configs/banglasenti.yaml  # the full experiment (needs the Hub)
    python pipelines/run_local.py --gcsfuse-semantics               # artifacts behave as on Vertex's /gcs/
    python pipelines/run_local.py --runner docker                   # every step in its image (make images)

Branches run one after another. Artifacts go under `pipeline.local_root` (default runs/); the paths of
every artifact and of the reports are printed at the end. The terminal shows a line per step (what it did: rows,
epochs, macro-F1); kfp's whole log goes to <root>/local-run-<time>-<pid>.log (--verbose shows it instead).

With --gcsfuse-semantics (or BANGLASENTI_GCSFUSE_SEMANTICS=1) every step refuses, under the pipeline root, what
Cloud Storage FUSE refuses (renaming a non-empty directory, hard links): see banglasenti/local/gcsfuse_semantics.py.

With --runner docker every step runs in the image Vertex AI would use (kfp's DockerRunner through the API at
$DOCKER_HOST, e.g. podman's: `make engine`), as the image's user, without network; the training steps in the TPU
image on XLA's CPU backend (PJRT_DEVICE=CPU). The steps see the artifact root as /gcs/<name>/ like on Vertex:
/gcs/<name> on this machine is a link to it (docs/containers.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from banglasenti.config.schema import CONFIG_DIR, Config, ConfigError, load_config
from banglasenti.local.run_log import run_logged
from banglasenti.local.runners import (
    LOCAL_IMAGES,
    RUNNERS,
    browsable_html,
    init_docker_runner,
    init_local_runner,
    list_artifacts,
    macro_f1_line,
)
from banglasenti.runtime.command_line import base_parser, run_cli
from pipelines.pipeline import Target, build_pipeline


def run_local(
    cfg: Config, pipeline_root: str | Path | None = None, gcsfuse_semantics: bool = False, runner: str = "subprocess"
) -> dict[str, Any]:
    """Run the DAG with kfp.local's SubprocessRunner in this Python environment, or (`runner="docker"`) every
    step in its image (cfg.pipeline.cpu_image, cfg.pipeline.train_image); return the run's paths."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    target: Target = "docker" if runner == "docker" else "local"
    if runner == "docker":
        init_docker_runner(cfg, pipeline_root)
    else:
        init_local_runner(cfg, pipeline_root, gcsfuse_semantics)
    start = time.monotonic()
    task = build_pipeline(cfg, target)()
    wall = time.monotonic() - start
    report = Path(task.outputs["report"].path)
    return {
        "run_dir": report.parent.parent,  # <run>/evaluate/report
        "wall_seconds": wall,
        "report": report,
        "data_report": Path(task.outputs["data_report"].path),
        "html_report": Path(task.outputs["html_report"].path),
        "metrics": task.outputs["metrics"].metadata,
    }


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__, str(CONFIG_DIR / "local.yaml"), "experiment YAML")
    parser.add_argument("--pipeline-root", help="where artifacts go (default: the config's pipeline.local_root)")
    parser.add_argument(
        "--gcsfuse-semantics",
        action="store_true",
        help="refuse what Cloud Storage FUSE refuses under the pipeline root (as on Vertex AI)",
    )
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="subprocess: this Python environment; docker: each step in its image, through the "
        "Docker API at $DOCKER_HOST (images: pipeline.cpu_image, pipeline.train_image; default the "
        "ones `make images` builds)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show kfp's whole log (executor inputs, outputs) instead of a line per step",
    )
    return run_cli(parser, run_command, argv)


def run_command(args: argparse.Namespace) -> int:
    """Run the pipeline as the command line asks and print where everything went; 1 if a step failed."""
    if args.runner == "docker" and args.gcsfuse_semantics:
        raise ConfigError("--gcsfuse-semantics applies to the subprocess runner")
    images = [f"{key}={value}" for key, value in LOCAL_IMAGES.items()] if args.runner == "docker" else []
    if args.runner == "docker" and not os.environ.get("DOCKER_HOST"):
        print("note: DOCKER_HOST is not set; the docker SDK uses its default socket", file=sys.stderr)
    cfg = load_config(args.config, images + args.overrides)
    root = Path(args.pipeline_root or cfg.pipeline.local_root).resolve()
    result = run_logged(lambda: run_local(cfg, root, args.gcsfuse_semantics, args.runner), root, args.verbose)
    if result is None:
        return 1
    print(f"\nRun finished in {result['wall_seconds']:.0f} s: {result['run_dir']}")
    for path in list_artifacts(result["run_dir"]):
        print(f"  {path.parent.name}/{path.name}: {path}")
    print("\n" + macro_f1_line(result["metrics"], ("lora", "baseline", "reference", "majority_class")))
    print(f"Comparison report: {result['report']}")
    print(f"HTML report: {browsable_html(result['html_report'])}")
    print(f"Data-quality report: {result['data_report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
