"""tokenize: token ids padded to static bucket lengths, so XLA compiles one graph per bucket.

    python -m components.tokenization --splits runs/prepare --base-model runs/base --output-dir runs/tok

Each text is truncated to `tokenize.max_length` and padded to the smallest bucket that holds it
(default 32/64/128). Writes train/val/test.parquet with input_ids, attention_mask, label, length (the bucket)
and num_tokens (real tokens); metadata records the truncation rate and the padding efficiency.
"""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp.dsl import Dataset, Input, Model, Output

from components.config import SPLITS, Config, TokenizeConfig
from components.encoding import load_tokenizer, tokenize_frame
from components.kfp_support import lightweight_component
from components.storage import committed_directory, read_parquet, sha256_file


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
    from components.runtime import progress, quiet_libraries

    quiet_libraries()
    meta = tokenize_splits(split_paths, model_dir, cfg.tokenize, out_dir)
    progress(
        f"tokenized to max_length {cfg.tokenize.max_length}: truncated {meta['truncation_rate']:.1%} of texts, "
        f"padding efficiency {meta['padding_efficiency']:.2f} in buckets, "
        f"{meta['packed_padding_efficiency']:.2f} with the whole split packed into rows"
        + (" (tokenize.packing: on)" if cfg.tokenize.packing else " (tokenize.packing: off)")
    )
    return meta


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
    from components.config import config_from_json
    from components.lineage import BASE_MODEL_KEYS, DATA_KEYS, carry, stamp
    from components.tokenization import run_tokenize

    paths = {"train": train.path, "val": val.path, "test": test.path}
    tokenized.metadata.update(run_tokenize(config_from_json(config_json), paths, base_model.path, tokenized.path))
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
        meta = run_tokenize(cfg, paths, args.base_model, args.output_dir)
        print(json.dumps({k: meta[k] for k in ("truncation_rate", "padding_efficiency")}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
