"""export-model: the model to serve (the better of LoRA and full fine-tuning by validation macro-F1), in HF format.

    python -m components.export_model --base-model runs/base --lora runs/lora --baseline runs/full \\
        --metrics runs/eval/metrics.json --splits runs/prep --data-uri sample --output-dir runs/export

Writes `merged/` (the served model, its tokenizer, `serving.json` and the model card, committed by its own
manifest), `adapter/` (the LoRA adapter and head), `baseline/` when LoRA is served, and `README.md` (the model card);
the layout: banglasenti/serving/export.py. `export.select` (config) chooses: `best` (validation macro-F1; LoRA on a
tie), `lora` or `baseline`.
"""

import json
from pathlib import Path

from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from banglasenti.runtime.kfp_support import lightweight_component
from banglasenti.serving.export import write_export


@lightweight_component
def export_model(
    config_json: str,
    base_model: Input[Model],
    lora_model: Input[Model],
    baseline_model: Input[Model],
    metrics: Input[Metrics],
    data_report: Input[Markdown],
    test: Input[Dataset],
    model: Output[Model],
):
    """Export the model to serve (the better by validation macro-F1 unless export.select says), the LoRA adapter,
    the other model and the model card."""
    from pathlib import Path

    from banglasenti.config.schema import config_from_json
    from banglasenti.runtime.process import progress
    from banglasenti.serving.export import write_export
    from banglasenti.storage.lineage import BASE_MODEL_KEYS, DATA_KEYS, carry, stamp

    cfg = config_from_json(config_json)
    trained_on = {**carry(lora_model, DATA_KEYS), **carry(lora_model, BASE_MODEL_KEYS)}
    report = Path(data_report.path)
    card = {
        "config": cfg,
        "trained_on": trained_on,
        "metrics": dict(metrics.metadata),
        "data_report": report.read_text(encoding="utf-8") if report.is_file() else None,
        "data_findings": dict(data_report.metadata),
    }
    model.metadata.update(
        write_export(
            base_model.path, lora_model.path, baseline_model.path, model.path, cfg.export.select, card, test.path
        )
    )
    progress(f"exported {model.metadata['selected']} for serving: {model.metadata['selection_reason']}")
    stamp(model, **trained_on, lora_model_uri=lora_model.uri, baseline_model_uri=baseline_model.uri)


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli
    from banglasenti.storage.artifacts import InputError

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory the models were trained on")
    parser.add_argument("--lora", required=True, help="trained LoRA model directory")
    parser.add_argument("--baseline", help="trained full fine-tuning model directory (without it: LoRA is exported)")
    parser.add_argument("--metrics", help="evaluate's metrics.json (test metrics for the model card)")
    parser.add_argument(
        "--splits",
        help="prepare's output directory: its report.md goes into the model card, and its test.parquet decides "
        "whether an ONNX conversion is served (export.onnx)",
    )
    parser.add_argument("--data-uri", help="the data the models were trained on, as given to prepare")
    parser.add_argument("--output-dir", required=True, help="directory for merged/, adapter/ and the model card")

    def work(args) -> None:
        from banglasenti.evaluation.metrics import flat_metrics

        cfg = load_cli_config(args)
        flat = {}
        if args.metrics:
            try:
                flat = flat_metrics(json.loads(Path(args.metrics).read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError) as err:
                raise InputError(f"{args.metrics}: not evaluate's metrics.json ({err})") from None
        report = Path(args.splits) / "report.md" if args.splits else None
        trained_on = {"source_uri": args.data_uri or cfg.data.uri, "base_model": cfg.model.name}
        card = {
            "config": cfg,
            "trained_on": trained_on,
            "metrics": flat,
            "data_report": report.read_text(encoding="utf-8") if report and report.is_file() else None,
        }
        select = cfg.export.select if args.baseline else "lora"
        test = Path(args.splits) / "test.parquet" if args.splits else None
        print(
            json.dumps(
                write_export(args.base_model, args.lora, args.baseline, args.output_dir, select, card, test),
                ensure_ascii=False,
            )
        )

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
