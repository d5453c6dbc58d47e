"""base-model: resolve the base model into a self-contained directory (weights + tokenizer).

    python -m components.base_model --train runs/prepare/train.parquet --output-dir runs/base
    python -m components.base_model --train train.parquet --output-dir out --set model.name=xlm-roberta-base

`model.name` is a Hugging Face Hub id (downloaded at `model.revision`, the resolved commit recorded), a local
or gs:// directory (copied), or `tiny`: a small XLM-R (same architecture and special tokens, fewer and
narrower layers) with a Unigram tokenizer trained on the train texts, pre-trained with masked-LM on them
for `model.tiny.pretrain_steps` steps (capped by `pretrain_max_seconds`), so fine-tuning starts from
weights that have seen Bengali rather than from noise.
"""

import json
from typing import TYPE_CHECKING

from kfp.dsl import Dataset, Input, Model, Output

from banglasenti.runtime.kfp_support import lightweight_component

if TYPE_CHECKING:
    pass
from banglasenti.models.backbone import run_base_model


@lightweight_component
def base_model(config_json: str, model_name: str, train: Input[Dataset], model: Output[Model]):
    """Resolve the base model (Hub id, local or gs:// directory, or the offline 'tiny' XLM-R)."""
    from banglasenti.config.parameters import run_overrides
    from banglasenti.config.schema import config_from_json
    from banglasenti.models.backbone import run_base_model
    from banglasenti.storage.lineage import DATA_KEYS, carry, stamp

    cfg = config_from_json(config_json, run_overrides(model_name=model_name))
    model.metadata.update(run_base_model(cfg, train.path, model.path))
    stamp(model, **carry(train, DATA_KEYS))


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--train", required=True, help="train.parquet from prepare (texts for the tiny base)")
    parser.add_argument("--output-dir", required=True, help="directory to write the model and tokenizer into")

    def work(args) -> None:
        cfg = load_cli_config(args)
        print(json.dumps(run_base_model(cfg, args.train, args.output_dir)))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
