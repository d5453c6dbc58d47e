"""Device choice, precision, and the static batch shapes that XLA needs (checked here on the CPU)."""

import os

import numpy as np
import pytest
import torch

from banglasenti.data.collation import IGNORED_LABEL, BucketCollator
from banglasenti.models.modeling import load_base_classifier
from banglasenti.training.device import Placement, device_kind, prepare_placement, resolve_precision
from banglasenti.training.runner import compute_val_metrics


def test_cpu_without_pjrt_device(monkeypatch):
    monkeypatch.delenv("PJRT_DEVICE", raising=False)
    assert device_kind() == "cpu"
    placement = prepare_placement(16, 64)
    assert placement == Placement("cpu", 1, "fp32", 16, 64)
    assert not placement.static_shapes


def test_pjrt_device_without_torch_xla_falls_back(monkeypatch):
    pytest.importorskip("torch")
    try:
        import torch_xla  # noqa: F401

        pytest.skip("torch_xla is installed here; tests/test_xla.py covers that case")
    except ImportError:
        pass
    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    assert device_kind() == "cpu"


def test_precision():
    assert resolve_precision("auto", "xla") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp32", "xla") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_placement_batches_and_metadata():
    placement = Placement("xla", 8, "bf16", 32, 128)
    assert placement.global_batch == 256 and placement.global_eval_batch == 1024
    assert placement.static_shapes
    assert placement.metadata()["global_batch"] == 256


def features(lengths, width=32):
    return [
        {
            "input_ids": list(range(5, 5 + n)) + [1] * (width - n),
            "attention_mask": [1] * n + [0] * (width - n),
            "label": i % 3,
        }
        for i, n in enumerate(lengths)
    ]


def test_collator_tops_up_a_short_batch_with_ignored_rows():
    batch = BucketCollator(pad_token_id=1, batch_size=8)(features([3, 7, 2]))
    assert batch["input_ids"].shape == (8, 32)
    assert batch["labels"].tolist() == [0, 1, 2] + [IGNORED_LABEL] * 5
    assert batch["attention_mask"][3:].sum(dim=1).tolist() == [1] * 5
    assert batch["attention_mask"][:3].sum(dim=1).tolist() == [3, 7, 2]
    assert BucketCollator(pad_token_id=1)(features([3, 7, 2]))["input_ids"].shape == (3, 32)


def test_filler_rows_change_neither_loss_nor_gradients(base_dir):
    model = load_base_classifier(base_dir).eval()
    rows = features([4, 9, 6])
    plain = BucketCollator(pad_token_id=1)(rows)
    padded = BucketCollator(pad_token_id=1, batch_size=8)(rows)
    losses, grads = [], []
    for batch in (plain, padded):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(model.classifier.out_proj.weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_val_metrics_skip_filler_rows():
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0]])
    labels = np.array([0, 1, 2, IGNORED_LABEL])
    assert compute_val_metrics((logits, labels))["macro_f1"] == 1.0
    assert compute_val_metrics((logits, np.array([0, 1, 2, 1])))["macro_f1"] < 1.0


def test_training_summary_records_device_and_batches(trained, fast_cfg):
    for _, summary in trained.values():
        placement = summary["placement"]
        assert (placement["kind"], placement["devices"], placement["precision"]) == ("cpu", 1, "fp32")
        assert placement["global_batch"] == placement["per_device_batch"] == fast_cfg.train.batch_size
        assert "xla_graphs" not in summary


class StaticPlacement(Placement):
    """A CPU placement with XLA's static batch shapes: short batches topped up with filler rows."""

    @property
    def static_shapes(self) -> bool:
        return True


def test_eval_loss_weighs_each_batch_by_its_real_rows(base_dir, tokenized_dir, fast_cfg, tmp_path):
    from banglasenti.data.collation import load_tokenized_split
    from banglasenti.training.runner import training_arguments
    from banglasenti.training.trainer import SentimentTrainer, real_rows_loss

    val = load_tokenized_split(tokenized_dir, "val")
    assert len(val) % 16, "the last evaluation batch must be short for filler rows to appear"
    model = load_base_classifier(base_dir)
    losses = {}
    for name, placement in {
        "plain": Placement("cpu", 1, "fp32", 16, 16),
        "filled": StaticPlacement("cpu", 1, "fp32", 16, 16),
    }.items():
        trainer = SentimentTrainer(
            model=model,
            args=training_arguments("baseline", fast_cfg, str(tmp_path / name), placement),
            placement=placement,
            pad_token_id=1,
            eval_dataset=val,
            compute_metrics=compute_val_metrics,
        )
        losses[name] = trainer.evaluate()["eval_loss"]
    with torch.no_grad():
        model.eval()
        batch = BucketCollator(pad_token_id=1)(list(val))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = torch.nn.functional.cross_entropy(logits, batch["labels"]).item()
        assert real_rows_loss(logits.numpy(), batch["labels"].numpy()) == pytest.approx(expected, rel=1e-6)
    assert losses["filled"] == pytest.approx(losses["plain"], rel=1e-5)
    assert losses["plain"] == pytest.approx(expected, rel=1e-5)


def test_bf16_is_the_trainers_own_autocast_over_float32_weights(base_dir, fast_cfg, tmp_path):
    from banglasenti.training.runner import training_arguments
    from banglasenti.training.trainer import SentimentTrainer

    placement = Placement("cpu", 1, "bf16", 4, 4)
    args = training_arguments("baseline", fast_cfg, str(tmp_path), placement)
    assert not args.bf16 and not args.fp16  # accelerate's mixed precision (XLA_USE_BF16 on a TPU) stays off
    model = load_base_classifier(base_dir)
    trainer = SentimentTrainer(model=model, args=args, placement=placement, pad_token_id=1, eval_dataset=features([4]))
    batch = BucketCollator(pad_token_id=1)(features([4, 9, 6]))
    with trainer.compute_loss_context_manager():
        out = model(**batch)
    assert out.logits.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    fp32 = Placement("cpu", 1, "fp32", 4, 4)
    plain = SentimentTrainer(
        model=model,
        args=training_arguments("baseline", fast_cfg, str(tmp_path), fp32),
        placement=fp32,
        pad_token_id=1,
        eval_dataset=features([4]),
    )
    with plain.compute_loss_context_manager():
        assert model(**batch).logits.dtype == torch.float32


def test_xla_downcast_variables_are_refused(monkeypatch):
    from banglasenti.training.device import refuse_xla_downcast

    monkeypatch.delenv("XLA_USE_BF16", raising=False)
    monkeypatch.delenv("XLA_DOWNCAST_BF16", raising=False)
    refuse_xla_downcast()
    monkeypatch.setenv("XLA_USE_BF16", "0")
    refuse_xla_downcast()
    monkeypatch.setenv("XLA_DOWNCAST_BF16", "1")
    with pytest.raises(RuntimeError, match="XLA_DOWNCAST_BF16=1 is set"):
        refuse_xla_downcast()


def save_tiny_encoder(path, cfg):
    """The configured tiny XLM-R encoder, random weights, saved as a base-model directory (in a second)."""
    from transformers import XLMRobertaModel

    from banglasenti.models.backbone import tiny_model_config

    XLMRobertaModel(tiny_model_config(cfg.model.tiny, vocab_size=64)).save_pretrained(path)
    return path


@pytest.mark.parametrize("mode", ["baseline", "lora"])
def test_a_model_on_xla_trains_and_evaluates_without_hub_kernels(mode, fast_cfg, tmp_path, monkeypatch):
    """transformers >= 5.25 turns hub kernels on by default: the load and each later train()/eval() call
    kernels.kernelize for the model's device, which raises for 'xla' (what a TPU reports too). Loaded by the
    project, a model whose device is 'xla' switches modes with no kernelize call, alone and under LoRA. (The
    locked transformers 5.24 never calls it; `make upgrade-check` runs this test against the newest release.)"""
    import transformers.modeling_utils as modeling_utils

    from banglasenti.training.runner import build_model

    calls = []

    def kernelize(model, *args, **kwargs):  # what kernels 0.19 does for the 'xla' device
        calls.append(kwargs.get("device"))
        raise ValueError("Unsupported device type 'xla'")

    monkeypatch.setattr(modeling_utils, "kernelize", kernelize, raising=False)
    model = build_model(mode, save_tiny_encoder(tmp_path / "base", fast_cfg), fast_cfg)
    base = model.get_base_model() if mode == "lora" else model
    monkeypatch.setattr(type(base), "device", property(lambda self: torch.device("xla")))
    assert base.device.type == "xla"
    model.train()
    model.eval()
    model.train()
    assert calls == []
    assert getattr(base, "use_kernels", False) is False


def test_choosing_xla_turns_hub_kernels_off_for_the_process(monkeypatch):
    import banglasenti.training.device as device

    monkeypatch.setenv(device.HUB_KERNELS_ENV, "1")
    monkeypatch.setattr(device, "device_kind", lambda: "xla")
    monkeypatch.setattr(device, "_xla_mesh_devices", lambda: 2)
    assert prepare_placement(8, 16).devices == 2
    assert os.environ[device.HUB_KERNELS_ENV] == "0"
    monkeypatch.setenv(device.HUB_KERNELS_ENV, "1")
    monkeypatch.setattr(device, "device_kind", lambda: "cpu")
    prepare_placement(8, 16)
    assert os.environ[device.HUB_KERNELS_ENV] == "1"
