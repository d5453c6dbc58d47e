"""The comparison the evaluate step makes (components/evaluate.py): both trained artifacts and the TF-IDF reference
scored on the test split, with bootstrap 95 % intervals and paired tests (bootstrap, McNemar), written as a
Markdown and a self-contained HTML report.

The weights evaluated are the saved artifacts (a LoRA adapter is applied to the base model artifact it
was trained from), never a fresh model. A model that predicts a single class is flagged as collapsed, and
each model is compared with always predicting the majority train class.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from banglasenti.config.schema import CLASS_NAMES, Config
from banglasenti.models.inference import predict_logits
from banglasenti.models.modeling import load_trained_model, load_training_summary, model_size_bytes
from banglasenti.storage.artifacts import atomic_file, read_parquet

# prepare's findings (its report artifact's metadata) shown in the HTML report, in this order
DATA_FINDINGS = (
    "source",
    "split_method",
    "seed",
    "rows_in",
    "dropped_empty",
    "dropped_non_bengali",
    "exact_duplicate_rows",
    "conflicting_texts",
    "dedup_removed_rows",
    "cross_split_texts",
    "non_bengali_rows",
    "latin_majority_rows",
)


def predict_test(
    model_dirs: Mapping[str, str | Path], base_dir: str | Path, tokenized_dir: str | Path, batch_size: int, packing=None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Test labels and every model's predicted classes (texts packed into rows with a TokenizeConfig whose
    `packing` is on)."""
    from banglasenti.data.collation import load_tokenized_split
    from banglasenti.data.encoding import load_tokenizer

    test = load_tokenized_split(tokenized_dir, "test")
    pad_id = load_tokenizer(base_dir).pad_token_id
    preds = {
        name: predict_logits(load_trained_model(model_dir, base_dir), test, batch_size, pad_id, packing).argmax(axis=-1)
        for name, model_dir in model_dirs.items()
    }
    return np.asarray(test["label"]), preds


def score_predictions(y_true: np.ndarray, preds: dict[str, np.ndarray], train_labels) -> dict[str, Any]:
    """Test metrics of every model, plus the majority-class reference."""
    from banglasenti.evaluation.metrics import classification_metrics, majority_class_metrics

    results: dict[str, Any] = {"majority_class": majority_class_metrics(train_labels, y_true), "models": {}}
    for name, y_pred in preds.items():
        metrics = classification_metrics(y_true, y_pred)
        metrics["beats_majority_class"] = metrics["macro_f1"] > results["majority_class"]["macro_f1"]
        results["models"][name] = metrics
    return results


def evaluate_models(
    model_dirs: Mapping[str, str | Path], base_dir: str | Path, tokenized_dir: str | Path, batch_size: int
) -> dict[str, Any]:
    """Test metrics of every model, plus the majority-class reference."""

    y_true, preds = predict_test(model_dirs, base_dir, tokenized_dir, batch_size)
    train_labels = read_parquet(Path(tokenized_dir) / "train.parquet", ["label"])["label"]
    return score_predictions(y_true, preds, train_labels)


def reference_predictions(split_paths: dict[str, str], y_true: np.ndarray, cfg) -> tuple[np.ndarray, dict]:
    """Train the TF-IDF reference on the prepared train split (C chosen on val); predict the test split."""
    import pandas as pd

    from banglasenti.evaluation.reference import predict_reference, train_reference

    frames = {name: pd.read_parquet(path) for name, path in split_paths.items()}
    if not np.array_equal(frames["test"]["label"].to_numpy(), y_true):
        raise ValueError("the prepared test split does not match the tokenized test split (labels differ)")
    model, summary = train_reference(frames["train"], frames["val"], cfg)
    return predict_reference(model, frames["test"]["text"]), summary


def data_quality_summary(
    split_paths: dict[str, str], report_text: str | None, findings: dict[str, Any] | None
) -> dict[str, Any]:
    """Label counts per split (from the prepared splits), prepare's findings and its Markdown report."""
    import pandas as pd

    from banglasenti.config.schema import CLASS_NAMES

    counts = {}
    for name, path in split_paths.items():
        labels = pd.read_parquet(path, columns=["label"])["label"]
        counts[name] = {cls: int((labels == i).sum()) for i, cls in enumerate(CLASS_NAMES)}
    found = findings or {}
    shown = {
        key: int(found[key]) if isinstance(found[key], float) and found[key].is_integer() else found[key]
        for key in DATA_FINDINGS
        if key in found
    }
    return {"label_counts": counts, "findings": shown, "markdown": report_text}


def render_comparison(results: dict[str, Any], summaries: dict[str, dict[str, Any]]) -> str:
    """The comparison report as Markdown."""
    models = results["models"]
    lines = ["# LoRA vs full fine-tuning: test results", ""]
    for name, m in models.items():
        if m["collapsed"]:
            lines += [f"> **WARNING: {name} collapsed: it predicts one class for every test example.**", ""]
        elif not m["beats_majority_class"]:
            lines += [f"> **WARNING: {name} does not beat the majority-class macro-F1.**", ""]
    if "served" in results:
        lines += [f"Exported and served: **{results['served']['model']}** ({results['served']['reason']}).", ""]
    lines += [
        "| model | macro-F1 | accuracy | weighted F1 | trainable params | train wall s | examples/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in models.items():
        s = summaries.get(name, {})
        lines.append(
            f"| {name} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} | {m['weighted_f1']:.4f} | "
            f"{s.get('trainable_parameters', 0):,} | {s.get('wall_seconds', 0):.1f} | "
            f"{s.get('train_examples_per_second', 0):.1f} |"
        )
    maj = results["majority_class"]
    lines.append(
        f"| majority class | {maj['macro_f1']:.4f} | {maj['accuracy']:.4f} | {maj['weighted_f1']:.4f} | - | - | - |"
    )
    lines += uncertainty_lines(results.get("uncertainty"))
    for name, m in models.items():
        lines += ["", f"## {name}", "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for cls, p in m["per_class"].items():
            lines.append(f"| {cls} | {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} | {p['support']} |")
        lines += [
            "",
            "Confusion matrix (rows: true, columns: predicted)",
            "",
            "| | " + " | ".join(CLASS_NAMES) + " |",
            "|---|" + "---:|" * len(CLASS_NAMES),
        ]
        for cls, row in zip(CLASS_NAMES, m["confusion_matrix"]):
            lines.append(f"| {cls} | " + " | ".join(str(v) for v in row) + " |")
        history = summaries.get(name, {}).get("history", [])
        if history:
            lines += ["", "| epoch | train loss | val loss | val macro-F1 |", "|---:|---:|---:|---:|"]
            for r in history:
                lines.append(
                    f"| {r['epoch']} | {r.get('train_loss', float('nan')):.4f} | "
                    f"{r.get('val_loss', float('nan')):.4f} | {r.get('val_macro_f1', float('nan')):.4f} |"
                )
    return "\n".join(lines) + "\n"


def uncertainty_lines(unc: dict[str, Any] | None) -> list[str]:
    """Markdown lines: bootstrap intervals of macro-F1 and the paired tests."""
    if not unc:
        return []
    level = round(100 * unc["level"])
    lines = [
        "",
        f"Macro-F1 {level} % bootstrap intervals ({unc['samples']} resamples of the test split): "
        + ", ".join(
            f"{name} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}]" for name, ci in unc["intervals"].items()
        ),
        "",
    ]
    for t in unc["paired_tests"]:
        lines.append(
            f"- {t['a']} - {t['b']}: macro-F1 {t['bootstrap_macro_f1_delta']:+.4f} "
            f"[{t['bootstrap_delta_low']:+.3f}, {t['bootstrap_delta_high']:+.3f}], paired bootstrap "
            f"p {t['bootstrap_p_value']:.3f}; McNemar p {t['mcnemar_p_value']:.3f} "
            f"(only {t['a']} right: {t['mcnemar_a_only_correct']}, only {t['b']} right: "
            f"{t['mcnemar_b_only_correct']})"
        )
    return lines


PAIRS = [("lora", "baseline"), ("lora", "reference"), ("baseline", "reference")]


def served_model(summaries: dict[str, dict[str, Any]], select: str) -> dict[str, Any]:
    """{"served": {"model", "reason"}}: the model export-model serves (`modeling.choose_model`), or {}."""
    from banglasenti.models.modeling import choose_model

    scores = {
        name: float(summaries[name]["best_val_macro_f1"])
        for name in ("lora", "baseline")
        if "best_val_macro_f1" in summaries.get(name, {})
    }
    if "lora" not in scores:
        return {}
    model, reason = choose_model(select if "baseline" in scores else "lora", scores)
    return {"served": {"model": model, "reason": reason}}


def run_evaluate(
    cfg: Config,
    model_dirs: dict[str, str],
    base_dir: str,
    tokenized_dir: str,
    report_path: str,
    split_paths: dict[str, str] | None = None,
    html_path: str | None = None,
    data_report: str | None = None,
    data_findings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the KFP component and the command line do: both models and the reference scored on the test split.

    With the prepared splits (`split_paths`) the TF-IDF reference is trained and the data-quality summary
    shown; with `html_path` the HTML report is written beside the Markdown one."""
    from banglasenti.evaluation.stats import compare
    from banglasenti.runtime.process import progress, quiet_libraries

    quiet_libraries()
    y_true, preds = predict_test(model_dirs, base_dir, tokenized_dir, cfg.train.eval_batch_size, cfg.tokenize)
    summaries = {name: load_training_summary(path) for name, path in model_dirs.items()}
    if split_paths and cfg.reference.enabled:
        preds["reference"], summaries["reference"] = reference_predictions(split_paths, y_true, cfg.reference)
    train_labels = read_parquet(Path(tokenized_dir) / "train.parquet", ["label"])["label"]
    results = score_predictions(y_true, preds, train_labels)
    r = cfg.report
    results["uncertainty"] = compare(
        y_true, preds, [p for p in PAIRS if p[0] in preds and p[1] in preds], r.bootstrap_samples, r.confidence, r.seed
    )
    results["summaries"] = {name: {k: v for k, v in s.items() if k != "history"} for name, s in summaries.items()}
    results.update(served_model(summaries, cfg.export.select))
    with atomic_file(report_path) as tmp:
        tmp.write_text(render_comparison(results, summaries), encoding="utf-8")
    if html_path:
        from banglasenti.evaluation.report import render_html

        sizes = {name: model_size_bytes(path) for name, path in model_dirs.items()}
        report_text = Path(data_report).read_text(encoding="utf-8") if data_report else None
        quality = data_quality_summary(split_paths, report_text, data_findings) if split_paths else None
        with atomic_file(html_path) as tmp:
            tmp.write_text(render_html(results, summaries, sizes, quality), encoding="utf-8")
    for name, m in results["models"].items():
        if m["collapsed"]:
            print(f"WARNING: {name} collapsed to a single predicted class", flush=True)
    progress(
        "test macro-F1: "
        + ", ".join(f"{name} {m['macro_f1']:.4f}" for name, m in results["models"].items())
        + f", majority class {results['majority_class']['macro_f1']:.4f}"
    )
    return results
