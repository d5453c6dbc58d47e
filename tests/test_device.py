"""Device choice, precision, and the static batch shapes that XLA needs (checked here on the CPU)."""

import numpy as np
import pytest
import torch

from components.device import Placement, device_kind, prepare_placement, resolve_precision
from components.train import IGNORED_LABEL, BucketCollator, compute_val_metrics, load_base_classifier


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
    return [{"input_ids": list(range(5, 5 + n)) + [1] * (width - n), "attention_mask": [1] * n + [0] * (width - n),
             "label": i % 3} for i, n in enumerate(lengths)]


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
