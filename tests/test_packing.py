"""Packed rows: the same logits per text as each text alone (base model and LoRA), loss and metrics over texts,
results in input order."""

import numpy as np
import pandas as pd
import pytest
import torch

from banglasenti.data.packing import (
    IGNORED_LABEL,
    PackedCollator,
    pack_rows,
    packed_forward,
    packed_logits,
    packed_records,
    packing_efficiency,
)

ROW, SLOTS = 128, 8


def test_pack_rows_fills_rows_within_their_limits():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(3, 60, size=500)] + [128, 127, 1]
    rows = pack_rows(lengths, ROW, SLOTS)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(len(row) <= SLOTS and sum(lengths[i] for i in row) <= ROW for row in rows)
    assert rows == pack_rows(lengths, ROW, SLOTS)  # deterministic
    lower_bound = max(-(-sum(lengths) // ROW), -(-len(lengths) // SLOTS))  # by tokens, by slots
    assert len(rows) <= 1.05 * lower_bound + 1, (len(rows), lower_bound)
    with pytest.raises(ValueError, match="text 0 has 129 tokens"):
        pack_rows([129], ROW, SLOTS)


def test_sample_texts_pack_to_mostly_real_tokens(tokenized_dir):
    lengths = pd.read_parquet(tokenized_dir / "train.parquet", columns=["num_tokens"])["num_tokens"].tolist()
    stats = packing_efficiency(lengths, ROW, SLOTS, 16)
    assert stats["padding_efficiency"] >= 0.8, stats


def test_collator_restarts_positions_per_text_and_marks_empty_slots():
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    create_position_ids_from_input_ids = XLMRobertaEmbeddings.create_position_ids_from_input_ids

    texts = [[0, 5, 6, 2], [0, 7, 2], [0, 8, 9, 10, 11, 2]]
    records = packed_records(texts, [4, 3, 6], [2, 0, 1], row_length=8, slots=2)
    batch = PackedCollator(pad_token_id=1, row_length=8, slots=2, rows=3, with_index=True)(records)
    assert batch["input_ids"].shape == (3, 8) and batch["cls_index"].shape == (3, 2)
    for r in range(3):
        for k in range(2):
            i = int(batch["index"][r * 2 + k])
            if i < 0:
                assert batch["labels"][r * 2 + k] == IGNORED_LABEL
                continue
            start, n = int(batch["cls_index"][r, k]), len(texts[i])
            assert batch["input_ids"][r, start : start + n].tolist() == texts[i]
            assert (batch["segment_ids"][r, start : start + n] == k + 1).all()
            alone = create_position_ids_from_input_ids(torch.tensor([texts[i]]), padding_idx=1)[0]
            assert batch["position_ids"][r, start : start + n].tolist() == alone.tolist()
            assert batch["labels"][r * 2 + k] == [2, 0, 1][i]
    assert sorted(int(i) for i in batch["index"] if i >= 0) == [0, 1, 2]
    assert (batch["segment_ids"][2] == 0).all() and (batch["labels"][4:] == IGNORED_LABEL).all()  # a filler row


def sample_texts(tokenized_dir, count: int = 24):
    frame = pd.read_parquet(tokenized_dir / "test.parquet", columns=["input_ids", "num_tokens", "label"])[:count]
    return [list(ids[:n]) for ids, n in zip(frame["input_ids"], frame["num_tokens"])], frame["label"].tolist()


def one_by_one(model, texts) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([t])).logits for t in texts]).float()


def lora_with_nonzero_adapters(base_dir, fast_cfg):
    """A LoRA model whose adapters change the output (LoRA's B starts at zero, which would hide a wrong path)."""
    from banglasenti.training.runner import build_model

    torch.manual_seed(0)
    model = build_model("lora", base_dir, fast_cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("mode", ["baseline", "lora"])
def test_packed_logits_match_each_text_alone(mode, base_dir, tokenized_dir, fast_cfg):
    from banglasenti.training.runner import build_model

    model = (
        lora_with_nonzero_adapters(base_dir, fast_cfg)
        if mode == "lora"
        else build_model("baseline", base_dir, fast_cfg)
    ).eval()
    texts, _ = sample_texts(tokenized_dir)
    want = one_by_one(model, texts).numpy()
    # 10 texts a batch: two rows of 8 slots, the second partly empty; results come back in input order
    got = packed_logits(model, texts, [len(t) for t in texts], 10, 1, ROW, SLOTS)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    if mode == "lora":  # the adapters matter: the base model alone gives other logits
        with model.disable_adapter():
            base = one_by_one(model, texts).numpy()
        assert np.abs(base - want).max() > 1e-3


def test_loss_and_gradients_count_texts_not_rows(base_dir, tokenized_dir, fast_cfg):
    """The packed loss is the mean over texts (empty slots and filler rows excluded); its gradients are those
    of the same mean taken text by text."""
    model = lora_with_nonzero_adapters(base_dir, fast_cfg).eval()  # eval: no dropout, so both paths agree
    texts, labels = sample_texts(tokenized_dir, 11)
    records = packed_records(texts, [len(t) for t in texts], labels, ROW, SLOTS)
    batch = PackedCollator(1, ROW, SLOTS, rows=len(records) + 1)(records)  # plus one filler row
    assert int((batch["labels"] != IGNORED_LABEL).sum()) == len(texts) < batch["labels"].numel()

    params = [p for p in model.parameters() if p.requires_grad]
    loss = packed_forward(model, batch).loss
    packed_grads = torch.autograd.grad(loss, params)
    alone = torch.stack(
        [
            torch.nn.functional.cross_entropy(model(input_ids=torch.tensor([t])).logits.float(), torch.tensor([y]))
            for t, y in zip(texts, labels)
        ]
    )
    want = alone.mean()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    for got, ref in zip(packed_grads, torch.autograd.grad(want, params)):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_evaluation_and_prediction_keep_input_order(trained, base_dir, tokenized_dir, fast_cfg):
    """Packed and bucketed evaluation give the same logits, in the split's order; so do predictions."""
    from banglasenti.data.collation import load_tokenized_split
    from banglasenti.models.inference import predict_logits
    from banglasenti.models.modeling import load_trained_model

    tokenize = fast_cfg.tokenize.model_copy(update={"packing": True})
    model = load_trained_model(trained["lora"][0], base_dir)
    test = load_tokenized_split(tokenized_dir, "test")
    packed = predict_logits(model, test, 16, 1, tokenize)
    bucketed = predict_logits(model, test, 16, 1)
    np.testing.assert_allclose(packed, bucketed, atol=2e-5, rtol=1e-4)
    # reversed input, reversed output
    reversed_set = test.select(list(range(len(test)))[::-1])
    np.testing.assert_allclose(predict_logits(model, reversed_set, 16, 1, tokenize), packed[::-1], atol=2e-5, rtol=1e-4)


def test_trainer_evaluation_counts_texts(trained, base_dir, tokenized_dir, tmp_path):
    """The Trainer's evaluation on packed rows sees one label per text of the split and scores the same
    macro-F1 as the texts predicted one by one."""
    from transformers import TrainingArguments

    from banglasenti.data.packing import PackedRows, load_packed_split
    from banglasenti.evaluation.metrics import headline_metrics
    from banglasenti.models.modeling import load_trained_model
    from banglasenti.training.device import Placement
    from banglasenti.training.runner import compute_val_metrics
    from banglasenti.training.trainer import SentimentTrainer, real_rows_loss

    model = load_trained_model(trained["baseline"][0], base_dir)
    val = load_packed_split(tokenized_dir, "val", ROW, SLOTS)
    texts = pd.read_parquet(tokenized_dir / "val.parquet", columns=["input_ids", "num_tokens", "label"])
    placement = Placement("cpu", 1, "fp32", 16, 16)
    trainer = SentimentTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path),
            per_device_eval_batch_size=2,
            report_to="none",
            remove_unused_columns=False,
            disable_tqdm=True,
        ),
        placement=placement,
        pad_token_id=1,
        packing=PackedRows(ROW, SLOTS, 2, 2),
        compute_metrics=compute_val_metrics,
    )
    out = trainer.predict(val)
    real = out.label_ids != IGNORED_LABEL
    assert real.sum() == len(texts) and len(val) < len(texts)
    logits = one_by_one(model, [list(ids[:n]) for ids, n in zip(texts["input_ids"], texts["num_tokens"])])
    want = headline_metrics(texts["label"].to_numpy(), logits.numpy().argmax(axis=-1))
    assert out.metrics["test_macro_f1"] == pytest.approx(want["macro_f1"])
    expected_loss = torch.nn.functional.cross_entropy(logits, torch.tensor(texts["label"].to_numpy())).item()
    assert out.metrics["test_loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert real_rows_loss(out.predictions, out.label_ids) == pytest.approx(expected_loss, rel=1e-4)


@pytest.mark.parametrize("devices", [1, 2])
def test_training_batches_hold_exactly_the_batch_size_in_texts(tokenized_dir, devices):
    """Every packed training batch but the last holds the batch size in texts (per device: its share), in a fixed
    number of rows; each epoch covers every text once, in an order fixed by (seed, epoch)."""
    from banglasenti.data.packing import (
        EpochShuffle,
        PackedBatchSampler,
        PackedCollator,
        load_packed_texts,
        train_rows_for,
    )

    texts = load_packed_texts(tokenized_dir, "train")
    per_device, seed, epochs = 16 // devices, 42, 3
    rows = train_rows_for(texts.lengths, per_device, ROW, SLOTS, seed, epochs)
    assert -(-per_device // SLOTS) <= rows < per_device
    sampler = PackedBatchSampler(EpochShuffle(len(texts), seed), texts.lengths, per_device, devices, rows, ROW, SLOTS)
    collate = PackedCollator(1, ROW, SLOTS, rows * devices, with_index=True)
    orders = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # as transformers does on the batch sampler; accelerate sets it on sampler.sampler
        assert sampler.sampler.epoch == epoch
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-len(texts) // 16)  # the bucketed path's steps per epoch
        seen = []
        for b, keys in enumerate(batches):
            batch = collate([texts[key] for key in keys])
            assert batch["input_ids"].shape == (rows * devices, ROW)
            filled = (batch["labels"] != IGNORED_LABEL).reshape(devices, -1).sum(dim=1).tolist()
            if b < len(batches) - 1:
                assert filled == [per_device] * devices
            seen.extend(int(i) for i in batch["index"] if i >= 0)
        assert sum(filled) == len(texts) - 16 * (len(batches) - 1)
        assert sorted(seen) == list(range(len(texts)))
        assert batches == list(sampler)  # the same epoch again: the same batches
        orders.append(seen)
    assert orders[0] != orders[1]


def test_packed_and_bucketed_runs_take_the_same_optimizer_steps(fast_cfg, base_dir, tokenized_dir, tmp_path):
    """A packed LoRA run takes the bucketed run's optimizer steps and reports texts per second like it."""
    from banglasenti.training.runner import train_model

    texts = len(pd.read_parquet(tokenized_dir / "train.parquet", columns=["label"]))
    steps = -(-texts // fast_cfg.train.batch_size) * fast_cfg.train.epochs
    packed = train_model(
        "lora", fast_cfg.with_overrides({"tokenize.packing": True}), base_dir, tokenized_dir, tmp_path / "lora"
    )
    bucketed = train_model(
        "lora", fast_cfg.with_overrides({"tokenize.packing": False}), base_dir, tokenized_dir, tmp_path / "bucketed"
    )
    assert packed["optimizer_steps"] == bucketed["optimizer_steps"] == steps
    assert packed["packing"]["train_rows_per_batch"] < fast_cfg.train.batch_size
    assert "packing" not in bucketed


@pytest.mark.parametrize(("epochs", "max_steps", "expected"), [(10, 0, 10), (10, 50, 10), (2, 350, 10), (2, 351, 11)])
def test_packed_rows_are_fixed_by_the_whole_run_also_when_max_steps_cuts_it(epochs, max_steps, expected):
    """A smoke run (max_steps) forms its rows over the full run's epochs, so it compiles the full run's shape."""
    from banglasenti.config.schema import Config
    from banglasenti.training.device import Placement
    from banglasenti.training.runner import training_epochs

    cfg = Config().model_copy(deep=True)
    cfg.train.epochs, cfg.train.max_steps = epochs, max_steps
    assert training_epochs(cfg, 555, Placement("cpu", 1, "fp32", 16, 16)) == expected  # 35 steps an epoch
