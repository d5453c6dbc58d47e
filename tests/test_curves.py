"""TensorBoard curves: event files written where Vertex AI and the config ask, read back with TensorBoard."""

from pathlib import Path

import pytest

from banglasenti.config.schema import config_from_json
from banglasenti.training.curves import curve_destinations, curves_callback

pytestmark = pytest.mark.slow


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_writes_train_and_validation_curves(base_dir, tokenized_dir, fast_cfg, tmp_path, monkeypatch):
    from banglasenti.training.runner import train_model

    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", str(tmp_path / "vertex-logs"))
    cfg = config_from_json(fast_cfg.to_json(), {"train.tensorboard_dir": str(tmp_path / "local-logs")})
    summary = train_model("lora", cfg, base_dir, tokenized_dir, tmp_path / "model")

    history = summary["history"]
    assert len(history) == cfg.train.epochs
    for root in (tmp_path / "vertex-logs", tmp_path / "local-logs"):
        run = root / "lora"
        assert [p.name.startswith("events.out.tfevents.") for p in run.iterdir()] == [True]  # no partial copies
        curves = scalars(run)
        assert {"train/loss", "train/learning_rate", "eval/loss", "eval/macro_f1", "eval/accuracy"} <= set(curves)
        losses, f1 = curves["train/loss"], curves["eval/macro_f1"]
        assert [v for _, v in losses] == pytest.approx([row["train_loss"] for row in history], rel=1e-6)
        assert [v for _, v in f1] == pytest.approx([row["val_macro_f1"] for row in history], rel=1e-6)
        steps = [s for s, _ in f1]
        assert steps == sorted(set(steps)) and steps[0] > 0  # one point per epoch, at its optimizer step
        assert not any(tag.startswith("train/train_") for tag in curves)  # the run summary is not a curve


def test_no_destination_no_writer(monkeypatch):
    monkeypatch.delenv("AIP_TENSORBOARD_LOG_DIR", raising=False)
    assert curve_destinations("", "lora") == []
    assert curves_callback("", "lora") is None


def test_gcs_destinations_go_through_the_fuse_mount(monkeypatch):
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", "gs://bucket/run/logs/")
    assert curve_destinations("gs://bucket/run/logs", "baseline") == [Path("/gcs/bucket/run/logs/baseline")]
    assert curve_destinations("/tmp/tb", "lora") == [Path("/gcs/bucket/run/logs/lora"), Path("/tmp/tb/lora")]
