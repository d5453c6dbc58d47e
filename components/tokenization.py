"""tokenize: token ids padded to static bucket lengths, so XLA compiles one graph per bucket.

    python -m components.tokenization --splits runs/prepare --base-model runs/base --output-dir runs/tok

Each text is truncated to `tokenize.max_length` and padded to the smallest bucket that holds it
(default 32/64/128). Writes train/val/test.parquet with input_ids, attention_mask, label, length (the bucket)
and num_tokens (real tokens); metadata records the truncation rate and the padding efficiency.
"""

import json
from pathlib import Path

from kfp.dsl import Dataset, Input, Model, Output

from banglasenti.config.schema import SPLITS
from banglasenti.data.tokenized_splits import run_tokenize
from banglasenti.runtime.kfp_support import lightweight_component


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
    from banglasenti.config.schema import config_from_json
    from banglasenti.data.tokenized_splits import run_tokenize
    from banglasenti.storage.lineage import BASE_MODEL_KEYS, DATA_KEYS, carry, stamp

    paths = {"train": train.path, "val": val.path, "test": test.path}
    tokenized.metadata.update(run_tokenize(config_from_json(config_json), paths, base_model.path, tokenized.path))
    stamp(tokenized, **carry(train, DATA_KEYS), **carry(base_model, BASE_MODEL_KEYS))


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

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
