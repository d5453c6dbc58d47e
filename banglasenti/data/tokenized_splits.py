"""The tokenized splits the tokenize step writes (components/tokenization.py): each text truncated to
`tokenize.max_length` and padded to the smallest bucket that holds it (default 32/64/128), as train/val/test.parquet
with input_ids, attention_mask, label, length (the bucket) and num_tokens (real tokens); the metadata records the
truncation rate and the padding efficiency.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from banglasenti.config.schema import SPLITS, Config, TokenizeConfig
from banglasenti.data.encoding import load_tokenizer, tokenize_frame
from banglasenti.storage.artifacts import committed_directory, read_parquet, sha256_file


def tokenize_splits(
    split_paths: Mapping[str, str | Path], model_dir: str | Path, cfg: TokenizeConfig, out_dir: str | Path
) -> dict[str, Any]:
    """Tokenize train/val/test into `out_dir` (committed once complete); returns the metadata."""
    tokenizer = load_tokenizer(model_dir)
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    meta: dict[str, Any] = {
        "max_length": cfg.max_length,
        "buckets": list(cfg.buckets),
        "tokenizer_class": type(tokenizer).__name__,
        "tokenizer_sha256": sha256_file(tokenizer_file) if tokenizer_file.exists() else "",
        "pad_token_id": tokenizer.pad_token_id,
    }
    with committed_directory(out_dir) as tmp:
        for name in SPLITS:
            table, stats = tokenize_frame(read_parquet(split_paths[name], ["text", "label"]), tokenizer, cfg)
            table.to_parquet(tmp / f"{name}.parquet", index=False)
            meta[name] = stats
        (tmp / "tokenization.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    train = meta["train"]
    meta.update(
        {
            k: train[k]
            for k in ("truncation_rate", "padding_efficiency", "padding_efficiency_at_256", "packed_padding_efficiency")
        }
    )
    return meta


def run_tokenize(cfg: Config, split_paths: dict[str, str], model_dir: str, out_dir: str) -> dict[str, Any]:
    """What the KFP component and the command line do: the splits tokenized with the model's tokenizer."""
    from banglasenti.runtime.process import progress, quiet_libraries

    quiet_libraries()
    meta = tokenize_splits(split_paths, model_dir, cfg.tokenize, out_dir)
    progress(
        f"tokenized to max_length {cfg.tokenize.max_length}: truncated {meta['truncation_rate']:.1%} of texts, "
        f"padding efficiency {meta['padding_efficiency']:.2f} in buckets, "
        f"{meta['packed_padding_efficiency']:.2f} with the whole split packed into rows"
        + (" (tokenize.packing: on)" if cfg.tokenize.packing else " (tokenize.packing: off)")
    )
    return meta
