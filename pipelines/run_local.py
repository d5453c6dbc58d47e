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
Cloud Storage FUSE refuses (renaming a non-empty directory, hard links): see pipelines/gcsfuse.py.

With --runner docker every step runs in the image Vertex AI would use (kfp's DockerRunner through the API at
$DOCKER_HOST, e.g. podman's: `make engine`), as the image's user, without network; the training steps in the TPU
image on XLA's CPU backend (PJRT_DEVICE=CPU). The steps see the artifact root as /gcs/<name>/ like on Vertex:
/gcs/<name> on this machine is a link to it (docs/containers.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from components.cli import base_parser, run_cli
from components.config import CONFIG_DIR, Config, ConfigError, load_config
from components.storage import atomic_file
from pipelines.pipeline import Target, build_pipeline
from pipelines.run_log import quiet_run

T = TypeVar("T")

RUNNERS = ("subprocess", "docker")
# The images `make images` builds (podman names local images localhost/NAME:latest).
LOCAL_IMAGES = {
    "pipeline.cpu_image": "localhost/banglasenti-cpu:latest",
    "pipeline.train_image": "localhost/banglasenti-tpu:latest",
}
GCS_MOUNT = Path("/gcs")  # where Vertex AI's steps see gs:// (Cloud Storage FUSE)


def init_local_runner(cfg: Config, pipeline_root: str | Path | None = None, gcsfuse_semantics: bool = False) -> Path:
    """kfp.local's SubprocessRunner in this Python environment, artifacts under the pipeline root (returned);
    in the gcsfuse-semantics mode (the flag, or $BANGLASENTI_GCSFUSE_SEMANTICS) for every step it runs."""
    from kfp import local

    from pipelines import gcsfuse

    root = Path(pipeline_root or cfg.pipeline.local_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if gcsfuse.requested(gcsfuse_semantics):
        gcsfuse.enable([root])
        print(f"gcsfuse semantics under {root}", flush=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return root


def gcs_view(root: Path) -> Path:
    """/gcs/<name>, a link to the artifact root `root`, so that paths are the same here and in the containers
    (kfp mounts the pipeline root at its own path) and look like Vertex AI's /gcs/<bucket>/."""
    view = GCS_MOUNT / f"banglasenti-{root.name}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    GCS_MOUNT.mkdir(exist_ok=True)
    if not view.is_symlink() or view.resolve() != root:
        tmp = view.with_name(view.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(root)
        tmp.replace(view)
    return view


def init_docker_runner(cfg: Config, pipeline_root: str | Path | None = None) -> Path:
    """kfp.local's DockerRunner (the API at $DOCKER_HOST), steps without network, artifacts under the pipeline
    root seen as /gcs/<name>/ in the containers and here (returned). The images' non-root user writes there."""
    from kfp import local

    from pipelines import container_run

    container_run.install()  # a failed step is reported as failed (kfp's own start loses its exit status here)
    root = Path(pipeline_root or cfg.pipeline.local_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)  # the CPU image's user (uid 10001) makes each run's directories
    view = gcs_view(root)
    # Vertex AI and Kubernetes replace the image's entrypoint (python -m) with the component's command; the
    # DockerRunner passes that command as the container's arguments, so `env` runs it as the program.
    runner = local.DockerRunner(network_mode="none", entrypoint=["/usr/bin/env"])
    local.init(runner=runner, pipeline_root=str(view), raise_on_error=True)
    return view


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


def list_artifacts(run_dir: Path) -> list[Path]:
    """Top-level artifacts of every task: <run>/<task>/<output>."""
    return sorted(
        p
        for task in run_dir.iterdir()
        if task.is_dir()
        for p in task.iterdir()
        if not p.name.startswith(".") and p.name != "executor_output.json"
    )


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


def run_logged(run: Callable[[], T], root: Path, verbose: bool) -> T | None:
    """`run()` (a pipeline on the local runner) with a line per step on the terminal and kfp's whole log in a file
    under `root` (`verbose`: kfp's log on the terminal); None, after one line on stderr, where a step failed."""
    log = root / f"local-run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    if not verbose:
        print(f"kfp's whole log: {log}", flush=True)
    try:
        with contextlib.nullcontext() if verbose else quiet_run(log):
            return run()
    except RuntimeError as err:  # the local runner's "Pipeline ... finished with status FAILURE"
        print(f"error: {err}" + ("" if verbose else f" (kfp's whole log: {log})"), file=sys.stderr)
        return None


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
    metrics = result["metrics"]
    print(
        "\nTest macro-F1: "
        + ", ".join(
            f"{name} {metrics[f'{name}_test_macro_f1']:.4f}"
            for name in ("lora", "baseline", "reference", "majority_class")
            if f"{name}_test_macro_f1" in metrics
        )
    )
    print(f"Comparison report: {result['report']}")
    print(f"HTML report: {browsable_html(result['html_report'])}")
    print(f"Data-quality report: {result['data_report']}")
    return 0


def browsable_html(html_report: Path) -> str:
    """A file:// link to a copy of the HTML report artifact named report.html beside it (the artifact's name has no
    extension, so a browser or file manager would not open it as a page); the artifact's path where the copy
    cannot be written."""
    page = html_report.with_name("report.html")
    try:
        with atomic_file(page) as tmp:
            shutil.copyfile(html_report, tmp)
    except OSError as err:
        print(f"note: no {page.name} beside the report ({err.strerror})", file=sys.stderr)
        return str(html_report)
    return page.as_uri()


if __name__ == "__main__":
    raise SystemExit(main())
