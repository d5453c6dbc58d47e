"""The exported model, as the export-model step writes it (components/export_model.py): the better of LoRA and full
fine-tuning by validation macro-F1 (`export.select`), in Hugging Face format.

`merged/` is the served model (what `banglasenti.serving.predict`, the server and the Model Registry upload use): a
plain save_pretrained classifier loadable without PEFT, with its tokenizer, `serving.json` (which model it is, why,
how its inputs are tokenized, whether it is only a demo) and the model card, committed by its own manifest, so a copy
of merged/ alone (Vertex AI copies the artifact directory it serves) can still be checked. `adapter/`: the LoRA
adapter and classifier head with the tokenizer (always kept). `baseline/`: the full fine-tuned model when LoRA is
served. `README.md`: the model card. A merged LoRA model's logits are checked against the adapter's on a few texts
before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from banglasenti.models.modeling import ADAPTER, BASELINE, MERGED, MODEL_CARD, SERVING_INFO, choose_model, merge_lora
from banglasenti.storage.artifacts import (
    ARTIFACT_MANIFEST,
    COMMITTED,
    committed_directory,
    copy_artifact_tree,
    write_manifest,
)

if TYPE_CHECKING:
    from banglasenti.config.schema import Config

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
    from banglasenti.models.modeling import load_training_summary
    from banglasenti.storage.artifacts import InputError

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
    test_split: str | Path | None = None,
) -> dict[str, Any]:
    """Write merged/ (the selected model, with its ONNX Runtime files when one predicts as PyTorch does on
    `test_split`), adapter/, baseline/ (when not served) and the model card under `out_dir` (committed once
    complete); return the summary (the export artifact's metadata).

    `card`: what the model card and serving.json say beyond the models themselves (the facts
    banglasenti.serving.model_card.render_model_card reads: config, trained_on, metrics, data_report, data_findings)."""
    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.models.modeling import load_trained_model, load_training_summary
    from banglasenti.runtime.process import quiet_libraries
    from banglasenti.serving.model_card import render_model_card

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
        served = (
            (lambda: merged) if selected == "lora" else (lambda: load_trained_model(dirs[selected], dirs[selected]))
        )
        info["runtime"] = served_runtime(out / MERGED, served, tokenizer, card.get("config"), test_split)
        summary["runtime"] = info["runtime"]["name"] + (
            f" {info['runtime']['precision']}" if "precision" in info["runtime"] else ""
        )
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
    from banglasenti.models.modeling import load_trained_model

    merged = merge_lora(base_dir, lora_dir)
    difference = max_logit_difference(merged, load_trained_model(lora_dir, base_dir), tokenizer, CHECK_TEXTS)
    if difference > MAX_LOGIT_DIFFERENCE:
        raise RuntimeError(f"merged model differs from the adapter: max logit difference {difference:.2e}")
    return merged, difference


def selection_facts(
    card: dict[str, Any], select: str, selected: str, reason: str, scores: dict[str, float], difference: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The export summary and serving.json: which model is served and why, the validation (and test) macro-F1,
    what it was trained on, whether it is only a demo, how its inputs are tokenized and batched."""
    from banglasenti.serving.model_card import demo_warning

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
        if batching := cfg.export.batching.model_dump(exclude_none=True):
            info["batching"] = batching  # the server's starting settings (banglasenti/serving/batching.py)
    metrics = card.get("metrics") or {}
    if f"{selected}_test_macro_f1" in metrics:
        summary["test_macro_f1"] = info["test_macro_f1"] = float(metrics[f"{selected}_test_macro_f1"])
    return summary, info


def write_models(out: Path, selected: str, merged, tokenizer, dirs: dict[str, Path], summary: dict[str, Any]) -> None:
    """merged/ (the served model), adapter/ and, when LoRA is served, baseline/ under `out`; their places and sizes
    go into `summary`."""
    from banglasenti.models.modeling import model_size_bytes

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


def served_runtime(
    model_dir: Path, load_model: Callable[[], Any], tokenizer, cfg: Config | None, test_split: str | Path | None
) -> dict[str, Any]:
    """serving.json's `runtime` for the model `load_model` returns, saved in `model_dir`: ONNX Runtime when a
    conversion predicts the test split as the PyTorch model does (banglasenti/serving/onnx_runtime.py), else PyTorch
    and why (a conversion that fails leaves no ONNX file and says so)."""
    if cfg is not None and not cfg.export.onnx:
        return {"name": "pytorch", "reason": "export.onnx is false"}
    if test_split is None:
        return {"name": "pytorch", "reason": "no test split to check an ONNX conversion against"}
    import datasets

    from banglasenti.config.schema import TokenizeConfig
    from banglasenti.data.encoding import tokenize_frame
    from banglasenti.models.inference import predict_logits
    from banglasenti.runtime.process import progress
    from banglasenti.serving.onnx_runtime import INT8_FILE, ONNX_FILE, choose_runtime
    from banglasenti.storage.artifacts import one_line, read_parquet

    tokenize = cfg.tokenize if cfg is not None else TokenizeConfig()
    batch_size = cfg.train.eval_batch_size if cfg is not None else 64
    table, _ = tokenize_frame(read_parquet(test_split, ["text", "label"]), tokenizer, tokenize)
    dataset = datasets.Dataset.from_pandas(table, preserve_index=False)
    model = load_model()
    torch_logits = predict_logits(model, dataset, batch_size, tokenizer.pad_token_id, tokenize)
    try:
        return choose_runtime(model_dir, model, tokenizer, table, batch_size, torch_logits)
    except Exception as err:  # noqa: BLE001 - the PyTorch model serves; serving.json and the card say why
        for name in (ONNX_FILE, INT8_FILE):
            (model_dir / name).unlink(missing_ok=True)
        reason = f"the ONNX conversion failed: {err.__class__.__name__}: {one_line(err)}"
        progress(f"warning: {reason}; PyTorch serves")
        return {"name": "pytorch", "reason": reason}
