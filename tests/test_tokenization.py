import json

import numpy as np
import pandas as pd
import pytest

from banglasenti.config.schema import TokenizeConfig
from banglasenti.data.encoding import bucket_for, load_tokenizer, tokenize_frame


@pytest.mark.parametrize(("length", "bucket"), [(1, 32), (32, 32), (33, 64), (64, 64), (65, 128), (128, 128)])
def test_bucket_for(length, bucket):
    assert bucket_for(length, [32, 64, 128]) == bucket


def test_tokenized_rows_are_padded_to_their_bucket(base_dir):
    tokenizer = load_tokenizer(base_dir)
    long_text = " ".join(["অনেক লম্বা একটি বাক্য যা কাটতে হবে"] * 40)
    frame = pd.DataFrame({"text": ["ভালো", "খুব খারাপ সার্ভিস, আর কখনো না", long_text], "label": [1, 0, 2]})
    cfg = TokenizeConfig(max_length=64, buckets=[16, 32, 64])
    table, stats = tokenize_frame(frame, tokenizer, cfg)
    for ids, mask, length, real in zip(
        table["input_ids"], table["attention_mask"], table["length"], table["num_tokens"]
    ):
        assert len(ids) == len(mask) == length == bucket_for(real, cfg.buckets)
        assert mask.sum() == real
        assert ids[0] == tokenizer.bos_token_id and ids[real - 1] == tokenizer.eos_token_id
        assert (ids[real:] == tokenizer.pad_token_id).all()
    assert table["num_tokens"].iloc[2] == 64
    assert stats["truncated"] == 1 and stats["truncation_rate"] == pytest.approx(1 / 3, abs=1e-4)
    real, padded = table["num_tokens"].sum(), table["length"].sum()
    assert stats["padding_efficiency"] == pytest.approx(real / padded, abs=1e-4)
    assert stats["padding_efficiency_at_256"] == pytest.approx(real / (3 * 256), abs=1e-4)
    short = table["num_tokens"].iloc[:2].sum()  # the 64-token text fills a row; the other two share one if they fit
    assert stats["packed_padding_efficiency"] == pytest.approx(real / ((2 if short <= 64 else 3) * 64), abs=1e-4)
    assert table["label"].tolist() == [1, 0, 2]


def test_tokenize_step_writes_three_splits(tokenized_dir, prepared_dir):
    meta = json.loads((tokenized_dir / "tokenization.json").read_text())
    assert meta["buckets"] == [32, 64, 128] and meta["tokenizer_sha256"]
    for name in ("train", "val", "test"):
        table = pd.read_parquet(tokenized_dir / f"{name}.parquet")
        source = pd.read_parquet(prepared_dir / f"{name}.parquet")
        assert table["label"].tolist() == source["label"].tolist()
        assert set(table["length"]) <= {32, 64, 128}
        assert all(len(ids) == n for ids, n in zip(table["input_ids"], table["length"]))
        assert meta[name]["rows"] == len(source)
    assert 0 < meta["train"]["padding_efficiency_at_256"] < meta["train"]["padding_efficiency"] <= 1
    assert np.isclose(sum(int(v) for v in meta["train"]["bucket_counts"].values()), meta["train"]["rows"])
