"""Texts to token ids: the tokenizer of a model directory, and texts encoded to static bucket lengths (each text
truncated to `tokenize.max_length` and padded to the smallest bucket that holds it)."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from banglasenti.config.schema import TokenizeConfig
from banglasenti.storage.artifacts import InputError, one_line, require_saved_dir

ORIGINAL_PAD_LENGTH = 256  # the original project padded every text to 256 tokens


def bucket_for(length: int, buckets: list[int]) -> int:
    """The smallest bucket >= length (lengths above the last bucket were truncated to it)."""
    return buckets[min(bisect.bisect_left(buckets, length), len(buckets) - 1)]


def tokenize_frame(frame: pd.DataFrame, tokenizer, cfg: TokenizeConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tokenize one split to bucketed lengths; returns the table and its statistics."""
    full = tokenizer(frame["text"].tolist(), truncation=False, add_special_tokens=True)["input_ids"]
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id
    input_ids, masks, lengths, real = [], [], [], []
    truncated = 0
    for ids in full:
        if len(ids) > cfg.max_length:
            ids = ids[: cfg.max_length - 1] + [eos_id]
            truncated += 1
        bucket = bucket_for(len(ids), cfg.buckets)
        input_ids.append(np.asarray(ids + [pad_id] * (bucket - len(ids)), dtype=np.int32))
        masks.append(np.asarray([1] * len(ids) + [0] * (bucket - len(ids)), dtype=np.int8))
        lengths.append(bucket)
        real.append(len(ids))
    table = pd.DataFrame(
        {
            "input_ids": input_ids,
            "attention_mask": masks,
            "label": frame["label"].to_numpy(dtype=np.int64),
            "length": np.asarray(lengths, dtype=np.int32),
            "num_tokens": np.asarray(real, dtype=np.int32),
        }
    )
    n = max(len(table), 1)
    real_tokens = int(table["num_tokens"].sum())
    stats = {
        "rows": len(table),
        "truncated": truncated,
        "truncation_rate": round(truncated / n, 5),
        "padding_efficiency": round(real_tokens / max(int(table["length"].sum()), 1), 4),
        "padding_efficiency_at_256": round(real_tokens / (n * ORIGINAL_PAD_LENGTH), 4),
        "packed_padding_efficiency": packed_padding_efficiency(table["num_tokens"], cfg),
        "bucket_counts": {str(b): int((table["length"] == b).sum()) for b in cfg.buckets},
        "tokens_p50": float(np.median(table["num_tokens"])) if len(table) else 0.0,
        "tokens_p99": float(np.percentile(table["num_tokens"], 99)) if len(table) else 0.0,
    }
    return table, stats


def packed_padding_efficiency(num_tokens: pd.Series, cfg: TokenizeConfig) -> float:
    """Share of real tokens with the whole split packed into rows of max_length at once (an upper bound: training
    batches of batch_size texts in a fixed number of rows reach less; banglasenti/data/packing.py)."""
    from banglasenti.data.packing import pack_rows

    rows = pack_rows(num_tokens.tolist(), cfg.max_length, cfg.pack_slots)
    return round(int(num_tokens.sum()) / max(len(rows) * cfg.max_length, 1), 4)


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    require_saved_dir(model_dir)
    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        raise InputError(f"{model_dir}: cannot load a tokenizer from it ({one_line(err)[:200]})") from None
