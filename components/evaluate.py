"""evaluate: load the two trained artifacts, predict the test split, compare.

    python -m components.evaluate --base-model runs/base --tokenized runs/tok \\
        --lora runs/lora --baseline runs/full --output-dir runs/eval

The weights evaluated are the saved artifacts (a LoRA adapter is applied to the base model artifact it
was trained from), never a fresh model. A model that predicts a single class is flagged as collapsed, and
each model is compared with always predicting the majority train class.
"""


import json
from pathlib import Path
from typing import Any

import numpy as np
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.config import CLASS_NAMES
from components.kfp_support import lightweight_component
from components.storage import atomic_file, read_parquet, require_model_dir

ADAPTER_CONFIG = "adapter_config.json"
HEADLINE = ("accuracy", "macro_f1", "weighted_f1")


def load_trained_model(model_dir: str | Path, base_dir: str | Path):
    """A trained artifact in eval mode: a PEFT adapter on its base model, or full weights."""
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    if (model_dir / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        from components.train import load_base_classifier

        require_model_dir(model_dir, ADAPTER_CONFIG, "adapter_model.safetensors")
        model = PeftModel.from_pretrained(load_base_classifier(base_dir), str(model_dir))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(require_model_dir(model_dir)),
                                                                   use_safetensors=True)
    return model.eval()


def predict_logits(model, dataset, batch_size: int, pad_token_id: int) -> np.ndarray:
    """Logits for every example of a tokenized split, in order."""
    import torch

    from components.train import BucketCollator

    collate = BucketCollator(pad_token_id)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch.pop("labels")
            outputs.append(model(**batch).logits.float())
    return torch.cat(outputs).numpy()


def evaluate_models(model_dirs: dict[str, str | Path], base_dir: str | Path, tokenized_dir: str | Path,
                    batch_size: int) -> dict[str, Any]:
    """Test metrics of every model, plus the majority-class reference."""

    from components.metrics import classification_metrics, majority_class_metrics
    from components.tokenization import load_tokenizer
    from components.train import load_tokenized_split

    test = load_tokenized_split(tokenized_dir, "test")
    train_labels = read_parquet(Path(tokenized_dir) / "train.parquet", ["label"])["label"]
    y_true = np.asarray(test["label"])
    pad_id = load_tokenizer(base_dir).pad_token_id
    results: dict[str, Any] = {"majority_class": majority_class_metrics(train_labels, y_true), "models": {}}
    for name, model_dir in model_dirs.items():
        logits = predict_logits(load_trained_model(model_dir, base_dir), test, batch_size, pad_id)
        metrics = classification_metrics(y_true, logits.argmax(axis=-1))
        metrics["beats_majority_class"] = metrics["macro_f1"] > results["majority_class"]["macro_f1"]
        results["models"][name] = metrics
    return results


def load_training_summary(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "training_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def render_comparison(results: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> str:
    """The comparison report as Markdown."""
    models = results["models"]
    lines = ["# LoRA vs full fine-tuning: test results", ""]
    for name, m in models.items():
        if m["collapsed"]:
            lines += [f"> **WARNING: {name} collapsed: it predicts one class for every test example.**", ""]
        elif not m["beats_majority_class"]:
            lines += [f"> **WARNING: {name} does not beat the majority-class macro-F1.**", ""]
    lines += ["| model | macro-F1 | accuracy | weighted F1 | trainable params | train wall s | examples/s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in models.items():
        s = summaries.get(name, {})
        lines.append(f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | {m['weighted_f1']:.4f} | "
                     f"{s.get('trainable_parameters', 0):,} | {s.get('wall_seconds', 0):.1f} | "
                     f"{s.get('train_examples_per_second', 0):.1f} |")
    maj = results["majority_class"]
    lines.append(f"| majority class | {maj['macro_f1']:.4f} | {maj['accuracy']:.4f} | {maj['weighted_f1']:.4f} "
                 "| - | - | - |")
    for name, m in models.items():
        lines += ["", f"## {name}", "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for cls, p in m["per_class"].items():
            lines.append(f"| {cls} | {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | {p['support']} |")
        lines += ["", "Confusion matrix (rows: true, columns: predicted)", "",
                  "| | " + " | ".join(CLASS_NAMES) + " |", "|---|" + "---:|" * len(CLASS_NAMES)]
        for cls, row in zip(CLASS_NAMES, m["confusion_matrix"]):
            lines.append(f"| {cls} | " + " | ".join(str(v) for v in row) + " |")
        history = summaries.get(name, {}).get("history", [])
        if history:
            lines += ["", "| epoch | train loss | val loss | val macro-F1 |", "|---:|---:|---:|---:|"]
            for r in history:
                lines.append(f"| {r['epoch']} | {r.get('train_loss', float('nan')):.4f} | "
                             f"{r.get('val_loss', float('nan')):.4f} | {r.get('val_macro_f1', float('nan')):.4f} |")
    return "\n".join(lines) + "\n"


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics with distinct keys per model (Vertex Experiments merges all Metrics into one row)."""
    flat: dict[str, float] = {}
    for name, m in results["models"].items():
        for key in HEADLINE:
            flat[f"{name}_test_{key}"] = m[key]
        for cls, p in m["per_class"].items():
            flat[f"{name}_test_f1_{cls}"] = p["f1"]
        flat[f"{name}_collapsed"] = float(m["collapsed"])
    flat["majority_class_test_macro_f1"] = results["majority_class"]["macro_f1"]
    return flat


def run_evaluate(config_json: str, model_dirs: dict[str, str], base_dir: str, tokenized_dir: str,
                 report_path: str) -> dict[str, Any]:
    """Entry point of the KFP component (and of the command line)."""
    from components.config import config_from_json
    from components.runtime import quiet_libraries

    quiet_libraries()
    cfg = config_from_json(config_json)
    results = evaluate_models(model_dirs, base_dir, tokenized_dir, cfg.train.eval_batch_size)
    summaries = {name: load_training_summary(path) for name, path in model_dirs.items()}
    with atomic_file(report_path) as tmp:
        tmp.write_text(render_comparison(results, summaries), encoding="utf-8")
    for name, m in results["models"].items():
        if m["collapsed"]:
            print(f"WARNING: {name} collapsed to a single predicted class", flush=True)
    return results


@lightweight_component
def evaluate(
    config_json: str,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    lora_model: Input[Model],
    baseline_model: Input[Model],
    metrics: Output[Metrics],
    lora_confusion: Output[ClassificationMetrics],
    baseline_confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
):
    """Test-set metrics of both trained models, confusion matrices and a comparison report."""
    from components.config import CLASS_NAMES
    from components.evaluate import flat_metrics, run_evaluate
    from components.lineage import BASE_MODEL_KEYS, DATA_KEYS, TOKENIZER_KEYS, carry, stamp

    dirs = {"lora": lora_model.path, "baseline": baseline_model.path}
    results = run_evaluate(config_json, dirs, base_model.path, tokenized.path, report.path)
    for key, value in flat_metrics(results).items():
        metrics.log_metric(key, value)
    for name, artifact in (("lora", lora_confusion), ("baseline", baseline_confusion)):
        artifact.log_confusion_matrix(list(CLASS_NAMES), results["models"][name]["confusion_matrix"])
    stamp(report, **flat_metrics(results), **carry(base_model, BASE_MODEL_KEYS),
          **carry(tokenized, {**DATA_KEYS, **TOKENIZER_KEYS}))


def main(argv: list[str] | None = None) -> int:
    from components.cli import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory")
    parser.add_argument("--tokenized", required=True, help="directory of tokenized splits")
    parser.add_argument("--lora", required=True, help="trained LoRA model directory")
    parser.add_argument("--baseline", required=True, help="trained full fine-tuning model directory")
    parser.add_argument("--output-dir", required=True, help="directory for report.md and metrics.json")

    def work(args) -> None:
        cfg = load_cli_config(args)
        out = Path(args.output_dir)
        dirs = {"lora": args.lora, "baseline": args.baseline}
        results = run_evaluate(cfg.to_json(), dirs, args.base_model, args.tokenized, str(out / "report.md"))
        with atomic_file(out / "metrics.json") as tmp:
            tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(json.dumps({k: round(v, 4) for k, v in flat_metrics(results).items() if "test_macro_f1" in k}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
