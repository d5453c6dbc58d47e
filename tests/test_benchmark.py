"""benchmarks/throughput.py times the train component's own model building, collators and Trainer step."""

import json
import subprocess
import sys

import pytest

from banglasenti.config.schema import Config
from tests.conftest import ROOT

pytestmark = pytest.mark.component  # runs the benchmark's command on a tiny architecture

SAMPLE = ROOT / "banglasenti" / "data" / "bangla_sentiment_sample.csv"


def test_benchmark_steps_through_the_train_components_trainer(tmp_path):
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "throughput.py"),
            "--arch",
            "tiny",
            "--data",
            str(SAMPLE),
            "--examples",
            "32",
            "--batch-size",
            "8",
            "--repeats",
            "1",
            "--settings",
            "buckets,packed",
            "--modes",
            "lora",
            "--device",
            "cpu",
            "--matmul-size",
            "64",
            "--tokenizer-vocab",
            "500",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    train = Config().train
    results = {(r["setting"], r["mode"]): r for r in report["results"]}
    assert set(results) == {("buckets", "lora"), ("packed", "lora")}  # padded rows and packed rows
    for result in results.values():
        assert result["device"] == "cpu"  # where --device says, whatever else the machine has
        # the optimizer, learning rate and clipping of banglasenti.training.runner.training_arguments for LoRA
        assert result["optimizer"] == (
            f"AdamW (adamw_torch_fused, lr {train.lora_learning_rate:g}, clip {train.max_grad_norm:g})"
        )
        assert result["examples"] == 32 and result["examples_per_s"] > 0
        assert 0 < result["trainable_parameters"] < 100_000  # the adapters and the head of the tiny model
