"""The KFP local runners a local run uses: kfp.local's SubprocessRunner in this environment (optionally with Cloud
Storage FUSE semantics, banglasenti/local/gcsfuse_semantics.py), or its DockerRunner over the images, with the
artifact root seen as /gcs/<name>/ like on Vertex AI (docs/containers.md); and the run's artifacts listed.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from banglasenti.config.schema import Config
from banglasenti.storage.artifacts import atomic_file

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

    from banglasenti.local import gcsfuse_semantics as gcsfuse

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

    from banglasenti.local import container_runner as container_run

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


def list_artifacts(run_dir: Path) -> list[Path]:
    """Top-level artifacts of every task: <run>/<task>/<output>."""
    return sorted(
        p
        for task in run_dir.iterdir()
        if task.is_dir()
        for p in task.iterdir()
        if not p.name.startswith(".") and p.name != "executor_output.json"
    )


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


def macro_f1_line(metrics: dict[str, float], models: tuple[str, ...]) -> str:
    """The line "Test macro-F1: lora 0.5949, baseline 0.5884, ..." for those of `models` the metrics hold."""
    scores = (f"{m} {metrics[f'{m}_test_macro_f1']:.4f}" for m in models if f"{m}_test_macro_f1" in metrics)
    return "Test macro-F1: " + ", ".join(scores)
