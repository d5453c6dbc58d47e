"""Interrupted training: kill `python -m components.train` mid-epoch, run it again, get the same result."""

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from banglasenti.storage.artifacts import InputError
from banglasenti.training.checkpoints import (
    MANIFEST,
    Interrupted,
    check_run_identity,
    checkpoint_problem,
    checkpoint_root,
    latest_valid_checkpoint,
    write_manifest,
)
from tests.conftest import FAST_OVERRIDES, ROOT, sigterm_at_step

CHECKPOINT_STEPS = 7  # 555 train rows / batch 16 = 35 steps per epoch: step 7 is mid-epoch


def train_command(mode: str, base_dir: Path, tokenized_dir: Path, out: Path, packing: bool = True) -> list[str]:
    sets = [
        f"{k}={v}"
        for k, v in {**FAST_OVERRIDES, "train.checkpoint_steps": CHECKPOINT_STEPS, "tokenize.packing": packing}.items()
    ]
    return [
        sys.executable,
        "-m",
        "components.train",
        "--mode",
        mode,
        "--base-model",
        str(base_dir),
        "--tokenized",
        str(tokenized_dir),
        "--output-dir",
        str(out),
        "--config",
        str(ROOT / "configs" / "local.yaml"),
        *[arg for s in sets for arg in ("--set", s)],
    ]


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done


def run_and_kill(cmd: list[str], ckpt_root: Path, sig: int) -> subprocess.CompletedProcess:
    """Start training, send `sig` once the first step checkpoint is committed, wait for the process to end."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    first = ckpt_root / f"checkpoint-{CHECKPOINT_STEPS}" / MANIFEST
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def weights_digest(model_dir: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(model_dir.glob("*.safetensors")))).hexdigest()


def comparable(summary: dict) -> dict:
    return {
        k: v for k, v in summary.items() if k not in ("wall_seconds", "train_examples_per_second", "resumed_from_step")
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "sig", "packing"),
    [("baseline", signal.SIGKILL, True), ("lora", signal.SIGTERM, True), ("lora", signal.SIGTERM, False)],
)
def test_killed_training_resumes_to_the_same_result(
    base_dir, tokenized_dir, tmp_path, gcsfuse_semantics, mode, sig, packing
):
    """Under gcsfuse semantics (tmp_path behaves as the /gcs/ mount), as on Vertex AI; packed rows (the resumed
    epoch forms the same batches) and bucketed batches."""
    reference = tmp_path / "reference"
    run_to_end(train_command(mode, base_dir, tokenized_dir, reference, packing))
    out = tmp_path / "model"
    ckpt_root = checkpoint_root(None, out, mode)
    killed = run_and_kill(train_command(mode, base_dir, tokenized_dir, out, packing), ckpt_root, sig)
    assert killed.returncode != 0, "training finished before the signal: nothing was interrupted"
    assert not out.exists()  # no partial artifact
    steps = sorted(int(p.name.split("-")[1]) for p in ckpt_root.glob("checkpoint-*"))
    if sig == signal.SIGTERM:  # a clean stop: one line, a fresh checkpoint at the step it stopped at
        assert killed.returncode == 2 and "Traceback" not in killed.stderr
        assert killed.stderr.strip().splitlines()[-1].startswith("error: stopped by SIGTERM at step ")
        assert steps[-1] > CHECKPOINT_STEPS and checkpoint_problem(ckpt_root / f"checkpoint-{steps[-1]}") is None
    else:
        assert killed.returncode == -signal.SIGKILL
    assert steps[-1] < 70 and steps[-1] % 35, steps  # stopped mid-epoch, before the end
    # A broken newer checkpoint (the save was cut short) is reported and skipped.
    broken = ckpt_root / f"checkpoint-{steps[-1] + 1}"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    resumed = run_to_end(train_command(mode, base_dir, tokenized_dir, out, packing))
    assert f"skipping checkpoint {broken}: no manifest" in resumed.stdout
    assert f"resuming from {ckpt_root / f'checkpoint-{steps[-1]}'}" in resumed.stderr  # a progress line
    summary = json.loads((out / "training_summary.json").read_text())
    expected = json.loads((reference / "training_summary.json").read_text())
    assert summary["resumed_from_step"] == steps[-1]
    assert comparable(summary) == comparable(expected)  # history, losses, best epoch: bit for bit
    assert weights_digest(out) == weights_digest(reference)
    assert not ckpt_root.exists()  # checkpoints are removed once the model is saved


def test_manifest_detects_truncated_altered_and_missing_files(tmp_path):
    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"a" * 64)
    (ckpt / "trainer_state.json").write_text("{}")
    assert checkpoint_problem(ckpt) == "no manifest (the save did not finish)"
    write_manifest(ckpt)
    assert checkpoint_problem(ckpt) is None
    (ckpt / "model.safetensors").write_bytes(b"a" * 32)
    assert "has 32 bytes, expected 64" in checkpoint_problem(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"b" * 64)
    assert checkpoint_problem(ckpt) == "model.safetensors does not match its sha256"
    (ckpt / "model.safetensors").unlink()
    assert checkpoint_problem(ckpt) == "model.safetensors is missing"
    (ckpt / MANIFEST).write_text("{not json")
    assert checkpoint_problem(ckpt) == "unreadable manifest"


def test_latest_valid_checkpoint_skips_and_removes_broken_ones(tmp_path, capsys):
    for step in (3, 6, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "w").write_text(str(step))
    write_manifest(tmp_path / "checkpoint-3")
    write_manifest(tmp_path / "checkpoint-6")
    (tmp_path / "checkpoint-6" / "w").write_text("X")  # same size, other bytes
    assert latest_valid_checkpoint(tmp_path) == tmp_path / "checkpoint-3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]
    assert "checkpoint-9: no manifest" in capsys.readouterr().out
    assert latest_valid_checkpoint(tmp_path / "absent") is None


def test_checkpoint_location(tmp_path, monkeypatch):
    monkeypatch.delenv("AIP_CHECKPOINT_DIR", raising=False)
    assert checkpoint_root(None, tmp_path / "model", "lora") == tmp_path / ".model.checkpoints"
    assert checkpoint_root(str(tmp_path / "c"), tmp_path / "model", "lora") == tmp_path / "c" / "lora"
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://bucket/job-1/checkpoints/")
    assert checkpoint_root(None, tmp_path / "model", "baseline") == Path("/gcs/bucket/job-1/checkpoints/baseline")
    assert checkpoint_root(str(tmp_path / "c"), tmp_path / "model", "lora") == tmp_path / "c" / "lora"


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    check_run_identity(tmp_path / "c", {"mode": "lora", "config": {"lr": 1}})
    check_run_identity(tmp_path / "c", {"mode": "lora", "config": {"lr": 1}})
    with pytest.raises(InputError, match="checkpoints of another run \\(differs in config\\)"):
        check_run_identity(tmp_path / "c", {"mode": "lora", "config": {"lr": 2}})


def test_sigterm_in_process_stops_with_a_checkpoint(
    base_dir, tokenized_dir, fast_cfg, tmp_path, monkeypatch, gcsfuse_semantics
):
    """The same stop path in-process: SIGTERM arrives during step 3, the trainer saves after step 4 and stops."""
    from banglasenti.training.runner import train_model

    monkeypatch.setenv("AIP_CHECKPOINT_DIR", str(tmp_path / "aip"))  # as Vertex AI sets it (here a plain path)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="stopped by SIGTERM at step 4 of 70"):
        train_model(
            "lora",
            fast_cfg.with_overrides({"train.checkpoint_steps": 0}),
            base_dir,
            tokenized_dir,
            tmp_path / "m",
            callbacks=[sigterm_at_step(3)],
        )
    assert signal.getsignal(signal.SIGTERM) == before
    assert not (tmp_path / "m").exists()
    ckpt = tmp_path / "aip" / "lora"
    assert latest_valid_checkpoint(ckpt) == ckpt / "checkpoint-4"
    assert not (tmp_path / ".m.checkpoints").exists()
