"""prepare: load, validate, clean, de-duplicate and split a labelled sentiment table.

    python -m components.prepare --input sample --output-dir runs/prepare
    python -m components.prepare --input data.tsv --output-dir out \
        --set data.label_map='{Negative: 0, Positive: 1, Neutral: 2}'

Writes train/val/test parquet files (columns text, label, row) and a Markdown data-quality report.
Conflicting labels for one text: the most frequent label wins, ties are dropped (`data.conflict_rule`).
"""

import json
from pathlib import Path

from kfp.dsl import Dataset, Input, Markdown, Output

from banglasenti.data.preparation import run_prepare
from banglasenti.runtime.kfp_support import lightweight_component


@lightweight_component
def prepare(
    config_json: str,
    data_uri: str,
    seed: int,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
    report: Output[Markdown],
    raw_data: Input[Dataset] = None,
):
    """Load, validate, clean, de-duplicate and split the raw data (`raw_data`: the imported raw dataset)."""
    from banglasenti.config.parameters import run_overrides
    from banglasenti.config.schema import config_from_json
    from banglasenti.data.preparation import run_prepare, split_metadata
    from banglasenti.storage.lineage import stamp

    uri = raw_data.uri if raw_data is not None else data_uri
    cfg = config_from_json(config_json, run_overrides(data_uri=uri, data_seed=seed))
    prepared = run_prepare(cfg, train.path, val.path, test.path, report.path)
    for name, artifact in (("train", train), ("val", val), ("test", test)):
        artifact.metadata.update(split_metadata(prepared, name))
    report.metadata.update({k: v for k, v in prepared.stats.items() if isinstance(v, (int, str))})
    stamp(train, val, test, report)


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--input", required=True, help="data URI: 'sample', a path, https:// URL or gs:// URI")
    parser.add_argument("--output-dir", required=True, help="directory for train/val/test.parquet and report.md")

    def work(args) -> None:
        cfg = load_cli_config(args, {"data.uri": args.input})
        out = Path(args.output_dir)
        prepared = run_prepare(cfg, out / "train.parquet", out / "val.parquet", out / "test.parquet", out / "report.md")
        print(json.dumps({"rows_out": prepared.stats["rows_out"], "report": str(out / "report.md")}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
