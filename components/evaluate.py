"""evaluate: load the two trained artifacts, predict the test split, compare.

    python -m components.evaluate --base-model runs/base --tokenized runs/tok \\
        --lora runs/lora --baseline runs/full --splits runs/prep --output-dir runs/eval

With the prepared splits (`--splits`), a character n-gram TF-IDF + logistic regression reference is trained on
the same split and scored beside them. Scores come with bootstrap 95 % intervals and paired tests
(bootstrap, McNemar); the report is written as Markdown and as a self-contained HTML page.

The weights evaluated are the saved artifacts (a LoRA adapter is applied to the base model artifact it
was trained from), never a fresh model. A model that predicts a single class is flagged as collapsed, and
each model is compared with always predicting the majority train class.
"""

import json
from pathlib import Path

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from banglasenti.evaluation.comparison import run_evaluate
from banglasenti.runtime.kfp_support import lightweight_component
from banglasenti.storage.artifacts import atomic_file


@lightweight_component
def evaluate(
    config_json: str,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    lora_model: Input[Model],
    baseline_model: Input[Model],
    train: Input[Dataset],
    val: Input[Dataset],
    test: Input[Dataset],
    data_report: Input[Markdown],
    metrics: Output[Metrics],
    lora_confusion: Output[ClassificationMetrics],
    baseline_confusion: Output[ClassificationMetrics],
    reference_confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
    html_report: Output[HTML],
):
    """Test-set metrics of both trained models and the TF-IDF reference, confusion matrices, and the
    comparison report (Markdown and HTML)."""
    from banglasenti.config.schema import CLASS_NAMES, config_from_json
    from banglasenti.evaluation.comparison import run_evaluate
    from banglasenti.evaluation.metrics import flat_metrics
    from banglasenti.storage.lineage import BASE_MODEL_KEYS, DATA_KEYS, TOKENIZER_KEYS, carry, stamp

    dirs = {"lora": lora_model.path, "baseline": baseline_model.path}
    splits = {"train": train.path, "val": val.path, "test": test.path}
    results = run_evaluate(
        config_from_json(config_json),
        dirs,
        base_model.path,
        tokenized.path,
        report.path,
        splits,
        html_report.path,
        data_report.path,
        dict(data_report.metadata),
    )
    for key, value in flat_metrics(results).items():
        metrics.log_metric(key, value)
    for name, artifact in (
        ("lora", lora_confusion),
        ("baseline", baseline_confusion),
        ("reference", reference_confusion),
    ):
        if name in results["models"]:
            artifact.log_confusion_matrix(list(CLASS_NAMES), results["models"][name]["confusion_matrix"])
    stamp(
        report,
        **flat_metrics(results),
        **carry(base_model, BASE_MODEL_KEYS),
        **carry(tokenized, {**DATA_KEYS, **TOKENIZER_KEYS}),
    )


def main(argv: list[str] | None = None) -> int:
    from banglasenti.runtime.command_line import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory")
    parser.add_argument("--tokenized", required=True, help="directory of tokenized splits")
    parser.add_argument("--lora", required=True, help="trained LoRA model directory")
    parser.add_argument("--baseline", required=True, help="trained full fine-tuning model directory")
    parser.add_argument(
        "--splits",
        help="prepare's output directory (train/val/test.parquet, report.md): adds "
        "the TF-IDF reference and the data-quality summary",
    )
    parser.add_argument("--output-dir", required=True, help="directory for report.md, report.html, metrics.json")

    def work(args) -> None:
        from banglasenti.config.schema import SPLITS

        cfg = load_cli_config(args)
        out = Path(args.output_dir)
        dirs = {"lora": args.lora, "baseline": args.baseline}
        splits = {name: str(Path(args.splits) / f"{name}.parquet") for name in SPLITS} if args.splits else None
        data_report = Path(args.splits) / "report.md" if args.splits else None
        results = run_evaluate(
            cfg,
            dirs,
            args.base_model,
            args.tokenized,
            str(out / "report.md"),
            splits,
            str(out / "report.html"),
            str(data_report) if data_report and data_report.exists() else None,
        )
        with atomic_file(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")
        from banglasenti.evaluation.metrics import flat_metrics

        print(json.dumps({k: round(v, 4) for k, v in flat_metrics(results).items() if "test_macro_f1" in k}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
