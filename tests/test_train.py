import json

import pandas as pd
import pytest
import torch

from banglasenti.config.schema import load_config
from banglasenti.data.collation import BucketCollator, load_tokenized_split
from banglasenti.data.encoding import load_tokenizer
from banglasenti.models.inference import predict_logits
from banglasenti.models.modeling import load_trained_model
from banglasenti.training.runner import build_model, epoch_history


def test_collator_keeps_bucket_shapes():
    collate = BucketCollator(pad_token_id=1)
    batch = collate(
        [
            {"input_ids": [0, 5, 2] + [1] * 29, "attention_mask": [1] * 3 + [0] * 29, "label": 2},
            {"input_ids": [0] + [7] * 40 + [2] + [1] * 22, "attention_mask": [1] * 42 + [0] * 22, "label": 0},
        ]
    )
    assert batch["input_ids"].shape == (2, 64)
    assert batch["attention_mask"].sum(dim=1).tolist() == [3, 42]
    assert (batch["input_ids"][0, 3:] == 1).all()
    assert batch["labels"].tolist() == [2, 0]


def test_epoch_history_merges_train_and_eval_logs():
    log = [
        {"loss": 1.0, "epoch": 1.0},
        {"eval_loss": 0.9, "eval_macro_f1": 0.4, "epoch": 1.0},
        {"loss": 0.7, "epoch": 2.0},
        {"eval_loss": 0.8, "eval_macro_f1": 0.5, "epoch": 2.0},
        {"train_runtime": 3.0, "epoch": 2.0},
    ]
    assert epoch_history(log) == [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_macro_f1": 0.4},
        {"epoch": 2, "train_loss": 0.7, "val_loss": 0.8, "val_macro_f1": 0.5},
    ]


@pytest.mark.parametrize(
    ("targets", "wrapped"),
    [
        (["query", "value"], {"query", "value"}),
        (
            ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
            {"query", "key", "value", "dense"},
        ),
        (["all-linear"], {"query", "key", "value", "dense"}),
    ],
)
def test_lora_wraps_the_targets_and_trains_the_head(base_dir, fast_cfg, targets, wrapped):
    cfg = fast_cfg.model_copy(update={"lora": fast_cfg.lora.model_copy(update={"target_modules": targets})})
    model = build_model("lora", base_dir, cfg)
    lora_modules = {
        name.split(".")[-1]
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "classifier" not in name
    }
    assert lora_modules == wrapped
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("classifier" in name and "modules_to_save" in name for name in trainable)
    assert all("lora_" in name or "classifier" in name for name in trainable)


def test_baseline_trains_every_weight(base_dir, fast_cfg):
    model = build_model("baseline", base_dir, fast_cfg)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("mode", ["lora", "baseline"])
def test_training_summary_is_consistent(trained, mode, tokenized_dir):
    model_dir, summary = trained[mode]
    val_texts = len(pd.read_parquet(tokenized_dir / "val.parquet", columns=["label"]))
    assert summary["val_texts"] == summary["val_texts_scored"] == val_texts  # every val text scored once
    assert [r["val_texts_scored"] for r in summary["history"]] == [val_texts] * len(summary["history"])
    saved = json.loads((model_dir / "training_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert summary["epochs_run"] == len(summary["history"]) == 2
    assert summary["best_val_macro_f1"] == pytest.approx(max(r["val_macro_f1"] for r in summary["history"]))
    assert summary["train_examples_per_second"] > 0
    assert not (model_dir / "training_args.bin").exists()
    if mode == "lora":
        assert summary["trainable_parameters"] < 0.5 * summary["total_parameters"]
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in model_dir.iterdir()}
    else:
        assert summary["trainable_parameters"] == summary["total_parameters"]
        assert (model_dir / "model.safetensors").exists()
    assert (model_dir / "tokenizer.json").exists()


def test_saved_lora_adapter_reloads_with_identical_logits(trained, base_dir, tokenized_dir):
    from peft import PeftModel

    from banglasenti.models.modeling import load_base_classifier

    model_dir, _ = trained["lora"]
    val = load_tokenized_split(tokenized_dir, "val")
    pad = load_tokenizer(base_dir).pad_token_id
    first = predict_logits(load_trained_model(model_dir, base_dir), val, 16, pad)
    again = PeftModel.from_pretrained(load_base_classifier(base_dir), str(model_dir)).eval()
    assert torch.equal(torch.as_tensor(first), torch.as_tensor(predict_logits(again, val, 16, pad)))
    fresh = load_base_classifier(base_dir).eval()
    assert not torch.allclose(torch.as_tensor(first), torch.as_tensor(predict_logits(fresh, val, 16, pad)))


def test_lora_head_was_trained(trained, base_dir):
    model_dir, _ = trained["lora"]
    model = load_trained_model(model_dir, base_dir)
    head = dict(model.named_parameters())
    trained_w = next(
        v for k, v in head.items() if "classifier" in k and "modules_to_save" in k and "out_proj.weight" in k
    )
    original_w = next(
        v for k, v in head.items() if "classifier" in k and "original_module" in k and "out_proj.weight" in k
    )
    assert not torch.equal(trained_w, original_w)


def test_training_is_reproducible(base_dir, tokenized_dir, fast_cfg, trained, tmp_path):
    from banglasenti.training.runner import train_model

    again = train_model("baseline", fast_cfg, str(base_dir), str(tokenized_dir), str(tmp_path / "b"))
    assert again["history"] == trained["baseline"][1]["history"]


def test_local_config_learning_rates_are_set_per_mode():
    cfg = load_config(None, {"train.lora_learning_rate": 1e-3, "train.baseline_learning_rate": 1e-5})
    from banglasenti.training.runner import learning_rate

    assert (learning_rate("lora", cfg), learning_rate("baseline", cfg)) == (1e-3, 1e-5)
