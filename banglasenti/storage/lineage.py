"""Lineage metadata shared by every step: the code and image that produced an artifact, and the settings behind it.

The pipeline factory stamps the git commit it was compiled from and each step's image into the step's
environment (`GIT_COMMIT_ENV`, `IMAGE_ENV`); `stamp` copies them, with the Vertex AI job that ran the step, into
the metadata of the step's output artifacts.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from banglasenti.config.schema import Config

GIT_COMMIT_ENV = "BANGLASENTI_GIT_COMMIT"
IMAGE_ENV = "BANGLASENTI_IMAGE"
# Set by Vertex AI inside a custom job: the job id and where it keeps outputs and checkpoints.
VERTEX_ENV = {
    "CLOUD_ML_JOB_ID": "vertex_custom_job_id",
    "AIP_MODEL_DIR": "vertex_model_dir",
    "AIP_CHECKPOINT_DIR": "vertex_checkpoint_dir",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(repo: str | Path = REPO_ROOT) -> str:
    """HEAD of the repository holding `repo`, with '-dirty' when tracked files differ; '' outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("-dirty" if dirty else "")


def step_environment(image: str | None, commit: str) -> dict[str, str]:
    """The environment variables the factory sets on a step (empty values left out)."""
    return {name: value for name, value in ((GIT_COMMIT_ENV, commit), (IMAGE_ENV, image or "")) if value}


def run_context() -> dict[str, str]:
    """What ran this step: git commit, image, and the Vertex AI custom job where there is one."""
    context = {"git_commit": os.environ.get(GIT_COMMIT_ENV, ""), "image": os.environ.get(IMAGE_ENV, "")}
    context.update({key: os.environ.get(name, "") for name, key in VERTEX_ENV.items()})
    return {key: value for key, value in context.items() if value}


# Keys an artifact takes over from its inputs' metadata (input key -> key in the output's metadata).
DATA_KEYS = {
    "source_uri": "source_uri",
    "source_sha256": "source_sha256",
    "seed": "split_seed",
    "split_method": "split_method",
}
BASE_MODEL_KEYS = {"base_model": "base_model", "revision": "base_model_revision", "content_sha256": "base_model_sha256"}
TOKENIZER_KEYS = {
    "max_length": "max_length",
    "buckets": "buckets",
    "tokenizer_class": "tokenizer_class",
    "tokenizer_sha256": "tokenizer_sha256",
}


def carry(source, keys: dict[str, str]) -> dict[str, Any]:
    """The entries of an input artifact's metadata named in `keys` (by either name), renamed for the output."""
    metadata = getattr(source, "metadata", None) or {}
    found = {out: metadata[key] if key in metadata else metadata.get(out) for key, out in keys.items()}
    return {key: value for key, value in found.items() if value is not None}


def training_lineage(cfg: Config) -> dict[str, Any]:
    """Every training hyperparameter in effect for this run (the compiled config with the run's parameters)."""
    return {"hyperparameters": cfg.train.model_dump()}


def stamp(*artifacts, **extra: Any) -> None:
    """Add the run context and `extra` to the metadata of each artifact.

    Not for Metrics artifacts: Vertex AI Experiments reads their metadata as the run's metrics.
    """
    context = {**run_context(), **extra}
    for artifact in artifacts:
        artifact.metadata.update(context)
