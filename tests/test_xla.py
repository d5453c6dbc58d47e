"""Training on XLA for real, on its CPU backend with two devices (PJRT_DEVICE=CPU, CPU_NUM_DEVICES=2): data
parallel through SPMD, one compiled graph per bucket and phase, no host sync in the step loop, a falling loss.

These run in the XLA environment (torch 2.9.0 + torch_xla 2.9.0): `make test-xla`, which `make test` runs.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import FAST_OVERRIDES, ROOT

pytestmark = pytest.mark.xla

DEVICES = 2
EPOCHS = 3


def train_on_xla(mode: str, base_dir, tokenized_dir, out_dir) -> dict:
    """The real train component in a fresh process on XLA's CPU backend; returns its training summary."""
    # Checkpoints at epoch ends only: a mid-epoch checkpoint is a device-to-host copy inside the step loop.
    overrides = {**FAST_OVERRIDES, "train.epochs": EPOCHS, "train.batch_size": 8, "train.eval_batch_size": 16,
                 "train.checkpoint_steps": 0}
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, "PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": str(DEVICES)}
    done = subprocess.run(
        [sys.executable, "-m", "components.train", "--mode", mode, "--config", str(ROOT / "configs" / "local.yaml"),
         *sets, "--base-model", str(base_dir), "--tokenized", str(tokenized_dir), "--output-dir", str(out_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out_dir / "training_summary.json").read_text())


def buckets_used(tokenized_dir, split: str) -> int:
    return pd.read_parquet(tokenized_dir / f"{split}.parquet", columns=["length"])["length"].nunique()


@pytest.mark.parametrize("mode", ["lora", "baseline"])
def test_data_parallel_training_with_static_shapes(mode, base_dir, tokenized_dir, tmp_path):
    pytest.importorskip("torch_xla", reason="torch_xla is installed in the XLA environment only: make test-xla")
    summary = train_on_xla(mode, base_dir, tokenized_dir, tmp_path / mode)

    placement = summary["placement"]
    assert placement["kind"] == "xla" and placement["devices"] == DEVICES
    assert placement["precision"] == "bf16"
    assert placement["global_batch"] == DEVICES * placement["per_device_batch"] == 16

    graphs = summary["xla_graphs"]
    assert len(graphs["step_loop_compiles"]) == EPOCHS
    # Training: at most one graph per bucket over the whole run, plus the first step's (it creates the optimizer
    # state). A bucket can first appear as a batch width in a later epoch (batches take their widest row).
    assert 1 <= sum(graphs["step_loop_compiles"]) <= buckets_used(tokenized_dir, "train") + 1
    # Evaluation batches are the same every epoch: the evaluations after the first compile nothing.
    assert graphs["after_loop_compiles"][1:] == [0] * (len(graphs["after_loop_compiles"]) - 1)
    assert graphs["step_loop_host_transfers"] == [0] * EPOCHS

    losses = [row["train_loss"] for row in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert (tmp_path / mode / "training_summary.json").exists()
