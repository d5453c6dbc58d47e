"""export: the model to serve (the better of LoRA and full fine-tuning by validation macro-F1), in HF format.

    python -m components.export --base-model runs/base --lora runs/lora --baseline runs/full \\
        --metrics runs/eval/metrics.json --splits runs/prep --data-uri sample --output-dir runs/export

Writes `merged/`: the served model (what `components.predict`, `components.serve` and the Model Registry upload
use), a plain save_pretrained classifier loadable without PEFT, with its tokenizer, `serving.json` (which model
it is, why, how its inputs are tokenized, whether it is only a demo) and the model card; it is committed by its
own manifest, so a copy of merged/ alone (Vertex AI copies the artifact directory it serves) can still be
checked. `adapter/`: the LoRA adapter and classifier head with the tokenizer (always kept). `baseline/`: the full
fine-tuned model when LoRA is served (when the baseline is served, it is merged/). `README.md`: the model card.
`export.select` (config) chooses: `best` (validation macro-F1; LoRA on a tie), `lora` or `baseline`. A merged
LoRA model's logits are checked against the adapter's on a few texts before anything is written.
"""

import json
from pathlib import Path
from typing import Any

from kfp.dsl import Input, Markdown, Metrics, Model, Output

from components.kfp_support import lightweight_component
from components.modeling import ADAPTER, BASELINE, MERGED, MODEL_CARD, SERVING_INFO, choose_model, merge_lora
from components.storage import ARTIFACT_MANIFEST, COMMITTED, committed_directory, copy_artifact_tree, write_manifest

CHECK_TEXTS = ["খুব ভালো লাগলো", "একদম বাজে সার্ভিস", "আজ বৃহস্পতিবার", "দাম একটু বেশি কিন্তু মান ভালো"]
MAX_LOGIT_DIFFERENCE = 1e-4


def max_logit_difference(model_a, model_b, tokenizer, texts: list[str]) -> float:
    """Largest absolute difference between the two models' logits on `texts`."""
    import torch

    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return float((model_a(**batch).logits - model_b(**batch).logits).abs().max())


def validation_macro_f1(model_dir: str | Path) -> float:
    """The best validation macro-F1 the training step recorded in the model directory."""
    from components.modeling import load_training_summary
    from components.storage import InputError

    summary = load_training_summary(model_dir)
    if "best_val_macro_f1" not in summary:
        raise InputError(f"{model_dir}: no training_summary.json with best_val_macro_f1 (not a trained model?)")
    return float(summary["best_val_macro_f1"])


def write_export(
    base_dir: str | Path,
    lora_dir: str | Path,
    baseline_dir: str | Path | None,
    out_dir: str | Path,
    select: str = "best",
    card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write merged/ (the selected model), adapter/, baseline/ (when not served) and the model card under
    `out_dir` (committed once complete); return the summary (the export artifact's metadata).

    `card`: what the model card and serving.json say beyond the models themselves (the facts
    components.model_card.render_model_card reads: config, trained_on, metrics, data_report, data_findings)."""
    from components.encoding import load_tokenizer
    from components.model_card import render_model_card
    from components.modeling import load_training_summary
    from components.runtime import quiet_libraries

    quiet_libraries()
    card = dict(card or {})
    dirs = {"lora": Path(lora_dir), **({"baseline": Path(baseline_dir)} if baseline_dir else {})}
    scores = {name: validation_macro_f1(path) for name, path in dirs.items()}
    selected, reason = choose_model(select, scores)
    tokenizer = load_tokenizer(lora_dir)
    merged, difference = checked_merge(base_dir, lora_dir, tokenizer)
    summaries = {name: load_training_summary(path) for name, path in dirs.items()}
    summary, info = selection_facts(card, select, selected, reason, scores, difference)
    with committed_directory(out_dir) as out:
        write_models(out, selected, merged, tokenizer, dirs, summary)
        text = render_model_card({**card, "selection": info, "summaries": summaries, "files": summary})
        for directory in (out, out / MERGED):
            (directory / MODEL_CARD).write_text(text, encoding="utf-8")
        (out / MERGED / SERVING_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        write_manifest(out / MERGED, ARTIFACT_MANIFEST, state=COMMITTED)  # merged/ checkable on its own
        (out / "export.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary


def checked_merge(base_dir: str | Path, lora_dir: str | Path, tokenizer) -> tuple[Any, float]:
    """The LoRA model merged into its base, and its largest logit difference from the adapter on CHECK_TEXTS
    (above MAX_LOGIT_DIFFERENCE: an error)."""
    from components.modeling import load_trained_model

    merged = merge_lora(base_dir, lora_dir)
    difference = max_logit_difference(merged, load_trained_model(lora_dir, base_dir), tokenizer, CHECK_TEXTS)
    if difference > MAX_LOGIT_DIFFERENCE:
        raise RuntimeError(f"merged model differs from the adapter: max logit difference {difference:.2e}")
    return merged, difference


def selection_facts(
    card: dict[str, Any], select: str, selected: str, reason: str, scores: dict[str, float], difference: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The export summary and serving.json: which model is served and why, the validation (and test) macro-F1,
    what it was trained on, whether it is only a demo, how its inputs are tokenized."""
    from components.model_card import demo_warning

    trained_on = card.get("trained_on") or {}
    warning = demo_warning(trained_on)
    summary: dict[str, Any] = {
        "selected": selected,
        "selection_reason": reason,
        "select": select,
        **{f"{name}_val_macro_f1": score for name, score in scores.items()},
        "max_logit_difference": difference,
        "merged_dir": MERGED,
        "adapter_dir": ADAPTER,
        "demo": bool(warning),
        **({"warning": warning} if warning else {}),
    }
    cfg = card.get("config")
    info = {key: summary[key] for key in ("selected", "selection_reason", "select", "demo")}
    info["val_macro_f1"] = scores
    info["trained_on"] = trained_on
    if warning:
        info["warning"] = warning
    if cfg is not None:
        info["tokenize"] = cfg.tokenize.model_dump()
    metrics = card.get("metrics") or {}
    if f"{selected}_test_macro_f1" in metrics:
        summary["test_macro_f1"] = info["test_macro_f1"] = float(metrics[f"{selected}_test_macro_f1"])
    return summary, info


def write_models(out: Path, selected: str, merged, tokenizer, dirs: dict[str, Path], summary: dict[str, Any]) -> None:
    """merged/ (the served model), adapter/ and, when LoRA is served, baseline/ under `out`; their places and sizes
    go into `summary`."""
    from components.modeling import model_size_bytes

    if selected == "lora":
        merged.save_pretrained(str(out / MERGED))
        tokenizer.save_pretrained(str(out / MERGED))
    else:
        copy_artifact_tree(dirs["baseline"], out / MERGED)
    copy_artifact_tree(dirs["lora"], out / ADAPTER)
    if selected == "lora" and "baseline" in dirs:
        copy_artifact_tree(dirs["baseline"], out / BASELINE)
        summary["baseline_dir"] = BASELINE
    summary["merged_bytes"] = model_size_bytes(out / MERGED)
    summary["adapter_bytes"] = model_size_bytes(out / ADAPTER)


@lightweight_component
def export_model(
    config_json: str,
    base_model: Input[Model],
    lora_model: Input[Model],
    baseline_model: Input[Model],
    metrics: Input[Metrics],
    data_report: Input[Markdown],
    model: Output[Model],
):
    """Export the model to serve (the better by validation macro-F1 unless export.select says), the LoRA adapter,
    the other model and the model card."""
    from pathlib import Path

    from components.config import config_from_json
    from components.export import write_export
    from components.lineage import BASE_MODEL_KEYS, DATA_KEYS, carry, stamp
    from components.runtime import progress

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
        write_export(base_model.path, lora_model.path, baseline_model.path, model.path, cfg.export.select, card)
    )
    progress(f"exported {model.metadata['selected']} for serving: {model.metadata['selection_reason']}")
    stamp(model, **trained_on, lora_model_uri=lora_model.uri, baseline_model_uri=baseline_model.uri)


def main(argv: list[str] | None = None) -> int:
    from components.cli import base_parser, load_cli_config, run_cli
    from components.storage import InputError

    parser = base_parser(__doc__)
    parser.add_argument("--base-model", required=True, help="base model directory the models were trained on")
    parser.add_argument("--lora", required=True, help="trained LoRA model directory")
    parser.add_argument("--baseline", help="trained full fine-tuning model directory (without it: LoRA is exported)")
    parser.add_argument("--metrics", help="evaluate's metrics.json (test metrics for the model card)")
    parser.add_argument("--splits", help="prepare's output directory (its report.md goes into the model card)")
    parser.add_argument("--data-uri", help="the data the models were trained on, as given to prepare")
    parser.add_argument("--output-dir", required=True, help="directory for merged/, adapter/ and the model card")

    def work(args) -> None:
        from components.metrics import flat_metrics

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
        print(
            json.dumps(
                write_export(args.base_model, args.lora, args.baseline, args.output_dir, select, card),
                ensure_ascii=False,
            )
        )

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
