"""tokenize: token ids padded to static bucket lengths, so XLA compiles one graph per bucket.

    python -m components.tokenization --splits runs/prepare --base-model runs/base --output-dir runs/tok

Each text is truncated to `tokenize.max_length` and padded to the smallest bucket that holds it
(default 32/64/128). Writes train/val/test.parquet with input_ids, attention_mask, label, length (the bucket)
and num_tokens (real tokens); metadata records the truncation rate and the padding efficiency.
"""


import bisect
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kfp.dsl import Dataset, Input, Model, Output

from components.config import SPLITS, TokenizeConfig
from components.kfp_support import lightweight_component
from components.storage import InputError, committed_directory, one_line, read_parquet, require_committed

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
    table = pd.DataFrame({
        "input_ids": input_ids,
        "attention_mask": masks,
        "label": frame["label"].to_numpy(dtype=np.int64),
        "length": np.asarray(lengths, dtype=np.int32),
        "num_tokens": np.asarray(real, dtype=np.int32),
    })
    n = max(len(table), 1)
    real_tokens = int(table["num_tokens"].sum())
    stats = {
        "rows": len(table),
        "truncated": truncated,
        "truncation_rate": round(truncated / n, 5),
        "padding_efficiency": round(real_tokens / max(int(table["length"].sum()), 1), 4),
        "padding_efficiency_at_256": round(real_tokens / (n * ORIGINAL_PAD_LENGTH), 4),
        "bucket_counts": {str(b): int((table["length"] == b).sum()) for b in cfg.buckets},
        "tokens_p50": float(np.median(table["num_tokens"])) if len(table) else 0.0,
        "tokens_p99": float(np.percentile(table["num_tokens"], 99)) if len(table) else 0.0,
    }
    return table, stats


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    if not Path(model_dir).is_dir():
        raise InputError(f"{model_dir}: no such model directory")
    require_committed(model_dir)
    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError) as err:
        raise InputError(f"{model_dir}: cannot load a tokenizer from it ({one_line(err)[:200]})") from None


def tokenize_splits(split_paths: dict[str, str | Path], model_dir: str | Path, cfg: TokenizeConfig,
                    out_dir: str | Path) -> dict[str, Any]:
    """Tokenize train/val/test into `out_dir` (committed once complete); returns the metadata."""
    tokenizer = load_tokenizer(model_dir)
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    meta: dict[str, Any] = {
        "max_length": cfg.max_length,
        "buckets": list(cfg.buckets),
        "tokenizer_class": type(tokenizer).__name__,
        "tokenizer_sha256": hashlib.sha256(tokenizer_file.read_bytes()).hexdigest() if tokenizer_file.exists()
        else "",
        "pad_token_id": tokenizer.pad_token_id,
    }
    with committed_directory(out_dir) as tmp:
        for name in SPLITS:
            table, stats = tokenize_frame(read_parquet(split_paths[name], ["text", "label"]), tokenizer, cfg)
            table.to_parquet(tmp / f"{name}.parquet", index=False)
            meta[name] = stats
        (tmp / "tokenization.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    train = meta["train"]
    meta.update({k: train[k] for k in ("truncation_rate", "padding_efficiency", "padding_efficiency_at_256")})
    return meta


def run_tokenize(config_json: str, split_paths: dict[str, str], model_dir: str, out_dir: str) -> dict[str, Any]:
    """Entry point of the KFP component (and of the command line)."""
    from components.config import config_from_json
    from components.runtime import quiet_libraries

    quiet_libraries()
    cfg = config_from_json(config_json)
    return tokenize_splits(split_paths, model_dir, cfg.tokenize, out_dir)


@lightweight_component
def tokenize(
    config_json: str,
    base_model: Input[Model],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    tokenized: Output[Dataset],
):
    """Tokenize the three splits to static bucketed lengths."""
    from components.lineage import BASE_MODEL_KEYS, DATA_KEYS, carry, stamp
    from components.tokenization import run_tokenize

    paths = {"train": train.path, "val": val.path, "test": test.path}
    tokenized.metadata.update(run_tokenize(config_json, paths, base_model.path, tokenized.path))
    stamp(tokenized, **carry(train, DATA_KEYS), **carry(base_model, BASE_MODEL_KEYS))


def main(argv: list[str] | None = None) -> int:
    from components.cli import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--splits", required=True, help="directory with train/val/test.parquet from prepare")
    parser.add_argument("--base-model", required=True, help="base model directory (tokenizer files)")
    parser.add_argument("--output-dir", required=True, help="directory for the tokenized splits")

    def work(args) -> None:
        cfg = load_cli_config(args)
        paths = {name: str(Path(args.splits) / f"{name}.parquet") for name in SPLITS}
        meta = run_tokenize(cfg.to_json(), paths, args.base_model, args.output_dir)
        print(json.dumps({k: meta[k] for k in ("truncation_rate", "padding_efficiency")}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
