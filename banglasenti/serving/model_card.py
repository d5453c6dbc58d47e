"""The exported model's card: README.md with Hugging Face model-card front matter.

It says what was trained on what (data sources and their licences, split and de-duplication), which model is
served and why, test metrics with bootstrap intervals beside the TF-IDF reference, the training configuration,
intended use and limits. A model trained on the embedded demo sample or on the tiny offline base says so first.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from banglasenti.config.schema import CLASS_NAMES
from banglasenti.storage.artifacts import SAMPLE_PATH, SAMPLE_URI, sha256_file

BANGLASENTI_URI = "https://raw.githubusercontent.com/niloydebbarma-code/banglasenti-dataset-prep/main/banglasenti.csv"
TINY = "tiny"  # components.base_model.TINY

# (name, where, licence, Hugging Face dataset id or "")
BANGLASENTI_PARTS = [
    ("Bangla Sentiment Dataset", "kaggle.com/datasets/tasrifnurhimel/sentiment-dataset-bangla-text", "Apache-2.0", ""),
    (
        "Bangla Sentiments in eLearning",
        "huggingface.co/datasets/TanjimKIT/Bangla_Sentiments_in_eLearning",
        "Apache-2.0",
        "TanjimKIT/Bangla_Sentiments_in_eLearning",
    ),
    (
        "Bengali Sentiment Classification (Sazzed 2021)",
        "kaggle.com/datasets/saurabhshahane/bengali-sentiment-classification",
        "CC BY 4.0",
        "",
    ),
    ("BanglaBook reviews", "github.com/mohsinulkabir14/BanglaBook", "CC BY-NC-SA 4.0", ""),
    ("Bangla Sentiment Dataset (Biswas & Hasan 2025)", "data.mendeley.com/datasets/rh67mckhbh/2", "CC BY 4.0", ""),
    (
        "Synthetic Bengali Sentiment",
        "huggingface.co/datasets/shaikh25/synthetic-bengali-sentiment",
        "Apache-2.0",
        "shaikh25/synthetic-bengali-sentiment",
    ),
    (
        "SentNoB (noisy Bangla texts)",
        "huggingface.co/datasets/sustcsenlp/bn_sentiment_noisy_dataset",
        "Apache-2.0",
        "sustcsenlp/bn_sentiment_noisy_dataset",
    ),
]
SAMPLE_DOMAINS = "products, food, services, travel, films, dramas, books, music, sports, education, news"


@cache
def sample_sha256() -> str:
    return sha256_file(SAMPLE_PATH)


def demo_reasons(trained_on: dict[str, Any]) -> list[str]:
    """Why a model is only a demo: trained on the embedded sample, or on the tiny offline base."""
    reasons = []
    if trained_on.get("source_uri") == SAMPLE_URI or trained_on.get("source_sha256") == sample_sha256():
        reasons.append("trained on the embedded 694-row demo sample")
    if trained_on.get("base_model") == TINY:
        reasons.append("built on the tiny offline base model, not a pre-trained XLM-R")
    return reasons


def demo_warning(trained_on: dict[str, Any]) -> str:
    """One line for a demo model ('' for a real one)."""
    reasons = demo_reasons(trained_on)
    if not reasons:
        return ""
    return f"DEMO MODEL, not a sentiment classifier to rely on: {' and '.join(reasons)}."


def data_source(trained_on: dict[str, Any]) -> dict[str, Any]:
    """What is known of the training data: name, parts with their licences, the card's licence id."""
    uri = str(trained_on.get("source_uri") or "")
    if uri == SAMPLE_URI or trained_on.get("source_sha256") == sample_sha256():
        return {
            "name": "the embedded Bengali sentiment sample (694 rows written for this project; docs/data_card.md)",
            "parts": [("embedded sample", "banglasenti/data/bangla_sentiment_sample.csv", "Apache-2.0", "")],
            "license": "apache-2.0",
            "domains": SAMPLE_DOMAINS,
            "noise": "one author's labels, no hard cases (sarcasm, mixed opinions), and a 70-row test split: "
            "one example moves accuracy by 1.4 points.",
        }
    if uri == BANGLASENTI_URI:
        return {
            "name": "the merged BanglaSenti dataset (niloydebbarma-code/banglasenti-dataset-prep)",
            "parts": BANGLASENTI_PARTS,
            "license": "cc-by-nc-sa-4.0",
            "domains": "social-media comments, product and book reviews, e-learning feedback, news comments",
            "noise": "the merge has duplicates, texts with conflicting labels, book titles with unreliable "
            "labels and a SentNoB part whose negative and neutral labels look swapped; the test "
            "scores inherit that noise.",
        }
    return {
        "name": f"`{uri or 'not recorded'}`",
        "parts": [],
        "license": "other",
        "domains": "",
        "noise": "not measured beyond the data-quality report's count of texts with conflicting labels.",
    }


def front_matter(facts: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face model-card metadata."""
    cfg, sel, metrics = facts.get("config"), facts["selection"], facts.get("metrics") or {}
    base = (facts.get("trained_on") or {}).get("base_model") or (cfg.model.name if cfg else "")
    tags = [
        "text-classification",
        "sentiment-analysis",
        "bengali",
        "xlm-roberta",
        "banglasenti-pipeline",
        "lora" if sel["selected"] == "lora" else "full-fine-tuning",
    ]
    if sel.get("demo"):
        tags.append("demo")
    meta: dict[str, Any] = {
        "language": ["bn"],
        "license": (cfg.export.license if cfg and cfg.export.license else source["license"]),
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": tags,
    }
    if base and base != TINY and "/" in base and not base.startswith(("gs://", "/", ".")):
        meta["base_model"] = base
    datasets = [hub for *_, hub in source["parts"] if hub]
    if datasets:
        meta["datasets"] = datasets
    meta["metrics"] = ["f1", "accuracy"]
    name = sel["selected"]
    if f"{name}_test_macro_f1" in metrics:
        meta["model-index"] = [
            {
                "name": f"banglasenti-{name}",
                "results": [
                    {
                        "task": {
                            "type": "text-classification",
                            "name": "Sentiment analysis (negative/positive/neutral)",
                        },
                        "dataset": {
                            "name": source["name"].split(" (")[0],
                            "type": str((facts.get("trained_on") or {}).get("source_uri") or "unknown"),
                            "split": "test",
                        },
                        "metrics": [
                            {
                                "type": "f1",
                                "name": "macro-F1",
                                "value": round(float(metrics[f"{name}_test_macro_f1"]), 4),
                            },
                            {
                                "type": "accuracy",
                                "name": "accuracy",
                                "value": round(float(metrics.get(f"{name}_test_accuracy", 0.0)), 4),
                            },
                        ],
                    }
                ],
            }
        ]
    return meta


def metrics_lines(facts: dict[str, Any]) -> list[str]:
    metrics, selected = facts.get("metrics") or {}, facts["selection"]["selected"]
    if not any(k.endswith("_test_macro_f1") for k in metrics):
        return ["No test metrics were given to the export (run evaluate first; the pipeline always does)."]
    cfg = facts.get("config")
    level = round(100 * cfg.report.confidence) if cfg is not None else 95
    lines = [
        f"Test split, {level} % bootstrap intervals of macro-F1 (banglasenti/evaluation/stats.py):",
        "",
        "| model | macro-F1 | interval | accuracy | weighted F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {"lora": "LoRA", "baseline": "full fine-tuning", "reference": "TF-IDF + logistic regression (reference)"}
    for key, label in names.items():
        if f"{key}_test_macro_f1" not in metrics:
            continue
        low, high = metrics.get(f"{key}_test_macro_f1_ci_low"), metrics.get(f"{key}_test_macro_f1_ci_high")
        interval = f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else "-"
        served = " **(served)**" if key == selected else ""
        collapsed = " (collapsed: one class)" if metrics.get(f"{key}_collapsed") else ""
        lines.append(
            f"| {label}{served}{collapsed} | {metrics[f'{key}_test_macro_f1']:.4f} | {interval} | "
            f"{metrics.get(f'{key}_test_accuracy', float('nan')):.4f} | "
            f"{metrics.get(f'{key}_test_weighted_f1', float('nan')):.4f} |"
        )
    if "majority_class_test_macro_f1" in metrics:
        lines.append(f"| majority class | {metrics['majority_class_test_macro_f1']:.4f} | - | - | - |")
    per_class = [
        f"{cls} {metrics[f'{selected}_test_f1_{cls}']:.3f}"
        for cls in CLASS_NAMES
        if f"{selected}_test_f1_{cls}" in metrics
    ]
    if per_class:
        lines += ["", f"Per-class F1 of the served model: {', '.join(per_class)}."]
    ref, own = metrics.get("reference_test_macro_f1"), metrics.get(f"{selected}_test_macro_f1")
    if ref is not None and own is not None and own < ref:
        lines += ["", f"**The served model scores below the TF-IDF reference ({own:.4f} < {ref:.4f}).**"]
    return lines


def config_lines(facts: dict[str, Any]) -> list[str]:
    cfg, summaries = facts.get("config"), facts.get("summaries") or {}
    lines = ["| setting | LoRA | full fine-tuning |", "|---|---|---|"]
    rows = [
        ("learning rate", "learning_rate"),
        ("batch size per device", "batch_size"),
        ("epochs run", "epochs_run"),
        ("best epoch (val macro-F1)", "best_epoch"),
        ("best val macro-F1", "best_val_macro_f1"),
        ("trainable parameters", "trainable_parameters"),
        ("total parameters", "total_parameters"),
        ("seed", "seed"),
        ("device", "device"),
    ]
    for label, key in rows:
        cells = [summaries.get(name, {}).get(key, "-") for name in ("lora", "baseline")]
        cells = [
            f"{c:.4f}"
            if isinstance(c, float) and key == "best_val_macro_f1"
            else f"{c:,}"
            if isinstance(c, int) and "parameters" in key
            else str(c)
            for c in cells
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    lora = summaries.get("lora", {}).get("lora")
    if lora:
        lines += [
            "",
            f"LoRA: r {lora['r']}, alpha {lora['alpha']}, dropout {lora['dropout']}, target modules "
            f"{', '.join(lora['target_modules'])}.",
        ]
    if cfg is not None:
        t = cfg.train
        lines += [
            f"Schedule: AdamW, warmup {t.warmup_ratio:.0%} then linear decay, weight decay {t.weight_decay}, "
            f"grad-norm clipping {t.max_grad_norm}, early stopping patience {t.early_stopping_patience} "
            "epochs; the best epoch by validation macro-F1 is kept.",
            f"Inputs: texts Unicode-NFC normalised, whitespace collapsed, truncated to {cfg.tokenize.max_length} "
            f"tokens and padded to the buckets {cfg.tokenize.buckets}.",
        ]
    return lines


def data_lines(facts: dict[str, Any], source: dict[str, Any]) -> list[str]:
    cfg = facts.get("config")
    trained_on = facts.get("trained_on") or {}
    lines = [f"Trained on {source['name']}."]
    if trained_on.get("source_sha256"):
        lines[-1] += f" sha256 `{trained_on['source_sha256']}`."
    if source["parts"]:
        lines += ["", "| source | where | licence |", "|---|---|---|"]
        lines += [f"| {name} | {where} | {licence} |" for name, where, licence, _ in source["parts"]]
        if source["license"] == "cc-by-nc-sa-4.0":
            lines += [
                "",
                "The sources carry different licences; BanglaBook's CC BY-NC-SA 4.0 is the most "
                "restrictive, so this card states it for the model (non-commercial, share-alike). Check the "
                "terms of every source before any other use.",
            ]
    else:
        lines += ["", "The licence of this data is not known to the pipeline: set `export.license` to state it."]
    if cfg is not None:
        d = cfg.data
        split = (
            f"one seeded stratified split {d.train_fraction:g}/{d.val_fraction:g}/{d.test_fraction:g}"
            if d.split_method == "stratified"
            else "the original project's two train_test_split calls (80/10/10)"
        )
        dedup = (
            f"texts cleaned (NFC, whitespace) and de-duplicated before splitting, so no text is in two splits; "
            f"a text seen with conflicting labels: {d.conflict_rule}"
            if d.deduplicate
            else "no de-duplication: a text may be in more than one split"
        )
        lines += ["", f"Split: {split}, seed {trained_on.get('split_seed', d.seed)}; {dedup}."]
    report = facts.get("data_report")
    if report:
        demoted = "\n".join("##" + line if line.startswith("#") else line for line in report.strip().splitlines())
        lines += [
            "",
            "<details><summary>Data-quality report of the prepare step</summary>",
            "",
            demoted,
            "",
            "</details>",
        ]
    return lines


def limits_lines(facts: dict[str, Any], source: dict[str, Any]) -> list[str]:
    lines = []
    if facts["selection"].get("warning"):
        lines.append(f"- **{facts['selection']['warning']}**")
    lines += [
        "- Bengali script only: romanised Bengali (Banglish, `khub valo`) was rare or absent in training and is "
        "not handled reliably; other languages are out of scope.",
        f"- Domains: trained on {source['domains'] or 'the given data'}; texts from domains absent there (medical, "
        "legal, finance, politics, long documents) are out of distribution.",
        f"- Label noise of the sources: {source['noise']}",
        "- Three classes only (negative, positive, neutral); no sarcasm, mixed-opinion or aspect handling.",
    ]
    if facts.get("config") is not None:
        lines.append(f"- Texts longer than {facts['config'].tokenize.max_length} tokens are truncated.")
    return lines


def render_model_card(facts: dict[str, Any]) -> str:
    """README.md of the export: front matter, then the card (facts: selection, summaries, files, and optionally
    config, trained_on, metrics (evaluate's flat metrics), data_report (prepare's Markdown))."""
    source = data_source(facts.get("trained_on") or {})
    sel = facts["selection"]
    head = yaml.safe_dump(front_matter(facts, source), allow_unicode=True, sort_keys=False)
    scores = ", ".join(f"{name} {score:.4f}" for name, score in sel["val_macro_f1"].items())
    files = facts.get("files") or {}
    served = "LoRA adapters merged into the base model" if sel["selected"] == "lora" else "full fine-tuning"
    base = (facts.get("trained_on") or {}).get("base_model") or "not recorded"
    lines = [f"---\n{head}---", "", "# Bengali sentiment classifier (banglasenti-pipeline)", ""]
    if sel.get("warning"):
        lines += [f"> **{sel['warning']}**", ""]
    lines += [
        f"A sequence classifier for Bengali text with three labels: {', '.join(CLASS_NAMES)} (ids 0, 1, 2). "
        f"Base model: `{base}`.",
        "",
        "## Which model is served",
        "",
        f"Served (`merged/`): **{sel['selected']}** ({served}). Reason: {sel['selection_reason']}. "
        f"Validation macro-F1: {scores}.",
        "",
        "Files: `merged/` the served model (safetensors, tokenizer, `serving.json`); `adapter/` the LoRA adapter "
        "and classifier head (apply to the same base model)"
        + ("; `baseline/` the full fine-tuned model." if files.get("baseline_dir") else "."),
        "",
        runtime_line(sel.get("runtime") or {}),
        "",
        "## Intended use",
        "",
        "Sentiment of short Bengali texts (reviews, comments, feedback; median about 42 characters), for "
        "aggregate analysis and triage, with a human reviewing decisions that matter. Not for judging "
        "individuals, moderation without review, or any text outside the limits below.",
        "",
        "## Evaluation",
        "",
        *metrics_lines(facts),
        "",
        "## Training data",
        "",
        *data_lines(facts, source),
        "",
        "## Training configuration",
        "",
        *config_lines(facts),
        "",
        "## Limits",
        "",
        *limits_lines(facts, source),
        "",
        "## How to use",
        "",
        "```",
        'python -m banglasenti.serving.predict --model EXPORT_DIR --text "খুব ভালো লাগলো"',
        "AIP_STORAGE_URI=EXPORT_DIR python -m banglasenti.serving.server   # docs/serving.md",
        "```",
    ]
    return "\n".join(lines) + "\n"


def runtime_line(runtime: dict[str, Any]) -> str:
    """What serves the model (ONNX Runtime or PyTorch), with the checks against PyTorch on the test split."""
    checks = runtime.get("checks") or {}
    measured = "; ".join(
        f"{name}: labels agree on {100 * c['label_agreement']:.2f} % of {runtime.get('texts')} test texts, macro-F1 "
        f"{c['macro_f1']:.4f} ({0.0 - c['macro_f1_drop']:+.4f} against PyTorch)"
        for name, c in checks.items()
    )
    if runtime.get("name") == "onnxruntime":
        head = (
            f"Runtime: ONNX Runtime, {runtime['precision']} (`merged/{runtime['file']}`), kept because it predicts as "
        )
        head += f"the PyTorch model does (at least {100 * runtime['min_agreement']:g} % of labels equal, macro-F1 at "
        head += f"most {runtime['max_macro_f1_drop']:g} lower)."
    else:
        head = f"Runtime: PyTorch ({runtime.get('reason', 'not recorded')})."
    return head + (f" Checks: {measured}." if measured else "")
