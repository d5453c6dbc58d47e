"""Resumable training: where checkpoints live, which one to resume from, stopping cleanly on SIGTERM.

The Hugging Face Trainer writes `checkpoint-<step>` directories (weights, optimizer, scheduler, RNG states,
trainer state) and resumes from one. On top of that:

- a checkpoint counts only once its manifest (size and sha256 of every file) has been written last,
  after the Trainer finished writing it; one without a manifest, or whose files do not match it, is partial
  or corrupt: it is reported, removed and the newest valid checkpoint is used instead;
- SIGTERM (a preempted Vertex AI job, a stopped container) saves a checkpoint at the end of the current step
  and ends training with `Interrupted`, so the next run with the same output location resumes there;
- an epoch's shuffle order depends only on (seed, epoch), and the running training loss travels in the
  checkpoint, and on XLA the device RNG (dropout) is seeded per optimizer step, so a resumed run ends with
  the same weights and metrics as an uninterrupted one;
- a run's identity (effective config, content of the tokenized data and base model) is recorded beside its
  checkpoints; a location holding another run's, or shared between runs (Vertex AI), gives each run a
  sub-location keyed by its identity, so a run resumes only its own checkpoints and is never refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banglasenti.storage import artifacts as storage
from banglasenti.storage.artifacts import InputError, atomic_file, content_digest, fuse_path

MANIFEST = "checkpoint_manifest.json"
LOSS_STATE = "loss_state.json"
RUN_IDENTITY = "run.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
VERTEX_CHECKPOINT_ENV = "AIP_CHECKPOINT_DIR"
# Set on training jobs whose checkpoint location other runs share (pipelines/vertex.py).
SHARED_CHECKPOINT_ENV = "BANGLASENTI_SHARED_CHECKPOINT_DIR"


class Interrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint; running again resumes from it."""


def checkpoint_root(configured: str | None, out_dir: str | Path, mode: str) -> Path:
    """Where the checkpoints of `mode` go: the configured directory, else $AIP_CHECKPOINT_DIR (set by Vertex AI
    custom jobs; a gs:// URI read through the /gcs/ mount), else a hidden directory beside the output."""
    base = configured or os.environ.get(VERTEX_CHECKPOINT_ENV)
    if base:
        return Path(fuse_path(base)) / mode
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.checkpoints"


def write_manifest(checkpoint: Path) -> None:
    """Commit a finished checkpoint: its manifest appears (replaced into place) only after every file is written."""
    storage.write_manifest(checkpoint, MANIFEST)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be resumed from (no manifest, missing, truncated or altered file), or None."""
    return storage.manifest_problem(checkpoint, MANIFEST, check_sha256=True)


def latest_valid_checkpoint(root: Path) -> Path | None:
    """The newest committed, intact checkpoint under `root`; newer broken ones are reported and removed."""
    if not root.is_dir():
        return None
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)))
    for _, path in reversed(steps):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"WARNING: skipping checkpoint {path}: {problem}; removing it", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    return None


def check_run_identity(root: Path, identity: dict[str, Any]) -> None:
    """Record what the checkpoints under `root` belong to; refuse to resume a different run from them."""
    path = root / RUN_IDENTITY
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != identity:
            differing = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
            raise InputError(
                f"{root}: checkpoints of another run (differs in {', '.join(differing)}); "
                "remove them or set train.checkpoint_dir elsewhere"
            )
        return
    root.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(identity, indent=1, sort_keys=True), encoding="utf-8")


def run_identity(mode: str, config: dict[str, Any], base_dir: str | Path, tokenized_dir: str | Path) -> dict[str, Any]:
    """What decides a training run's result: mode, effective config, and the content of its inputs."""
    return {
        "mode": mode,
        "config": config,
        "data_sha256": content_digest(tokenized_dir),
        "base_model_sha256": content_digest(base_dir),
    }


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _recorded_identity(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / RUN_IDENTITY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as another run's


def run_checkpoint_dir(root: Path, identity: dict[str, Any], shared: bool | None = None) -> Path:
    """Where this run keeps (and resumes) its checkpoints under `root`; never refuses a run.

    `root/run-<identity key>` when the location is shared between runs (`SHARED_CHECKPOINT_ENV`, set by the
    pipeline on Vertex AI custom jobs) or holds this run's checkpoints already; else `root` itself unless it
    holds another run's identity.
    """
    if shared is None:
        shared = os.environ.get(SHARED_CHECKPOINT_ENV) == "1"
    own = root / f"run-{identity_key(identity)}"
    if not shared and _recorded_identity(own) != identity:
        recorded = _recorded_identity(root)
        if recorded is None or recorded == identity:
            check_run_identity(root, identity)
            return root
        differing = sorted(k for k in set(recorded) | set(identity) if recorded.get(k) != identity.get(k))
        print(
            f"{root} holds checkpoints of another run (differs in {', '.join(differing)}); "
            f"this run keeps its own in {own}",
            flush=True,
        )
    if _recorded_identity(own) not in (None, identity):  # unreadable or altered: start this run afresh
        shutil.rmtree(own, ignore_errors=True)
    check_run_identity(own, identity)
    return own


def remove_checkpoints(ckpt: Path) -> None:
    """Remove a finished run's checkpoints and identity; other runs' `run-*` locations beneath it stay."""
    if not ckpt.is_dir():
        return
    for path in ckpt.iterdir():
        if path.is_dir() and path.name.startswith("run-") and (path / RUN_IDENTITY).is_file():
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        ckpt.rmdir()


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[dict[str, bool]]:
    """While inside, SIGTERM only sets flag["requested"] (the trainer checkpoints and stops at the step end)."""
    flag = {"requested": False}

    def handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        flag["requested"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def seed_xla_rng(seed: int, step: int) -> None:
    """Seed the XLA device's RNG (dropout) from the run's seed and the optimizer step about to run.

    torch_xla advances the device seed at every graph cut (`mark_step`), whatever ran, and a resumed process
    cuts graphs that the interrupted one did not (loading the checkpoint), so the seed saved in a checkpoint
    does not continue the stream. Seeded per step, the masks depend only on (seed, step): a resume is exact."""
    import torch_xla.core.xla_model as xm

    xm.set_rng_state((seed * 1_000_003 + step) % 2**63)
