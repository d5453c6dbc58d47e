"""The models the steps hand on: a base classifier from the base-model artifact, a trained artifact (LoRA adapter
on its base, or full weights), the names inside the export, and which trained model is served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from banglasenti.config.schema import CLASS_NAMES, NUM_CLASSES
from banglasenti.storage.artifacts import require_model_dir

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's: a directory holding it is a LoRA adapter
# The export's directories: the served model, the LoRA adapter, the full fine-tuned model when LoRA is served
MERGED, ADAPTER, BASELINE = "merged", "adapter", "baseline"
SERVING_INFO = "serving.json"  # beside the served model: which model it is, why, how its inputs are tokenized
MODEL_CARD = "README.md"
CANDIDATES = ("lora", "baseline")
# Every load: safetensors only, and no hub kernels. transformers >= 5.25 turns hub kernels on by default: the load
# and every later `model.train()`/`model.eval()` call `kernels.kernelize`, which swaps layers for code fetched from
# the Hugging Face Hub for the model's device and refuses the 'xla' device (a TPU run would stop at its first
# `model.train()`). Off, every device runs the model code the tests run (transformers 5.24 and older ignore it).
LOAD_OPTIONS = {"use_safetensors": True, "use_kernels": False}


def load_base_classifier(base_dir: str | Path, attn_implementation: str | None = None):
    """The base encoder with a fresh 3-class head (id2label set)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(require_model_dir(base_dir)),
        **LOAD_OPTIONS,
        attn_implementation=attn_implementation,
        num_labels=NUM_CLASSES,
        id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: i for i, name in enumerate(CLASS_NAMES)},
    )


def load_trained_model(model_dir: str | Path, base_dir: str | Path):
    """A trained artifact in eval mode: a PEFT adapter on its base model, or full weights."""
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    if (model_dir / ADAPTER_CONFIG).exists():
        from peft import PeftModel

        require_model_dir(model_dir, ADAPTER_CONFIG, "adapter_model.safetensors")
        model = PeftModel.from_pretrained(load_base_classifier(base_dir), str(model_dir))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(require_model_dir(model_dir)), **LOAD_OPTIONS)
    return model.eval()


def model_size_bytes(model_dir: str | Path) -> int:
    """Bytes of the weights saved in a model directory (safetensors files)."""
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*.safetensors"))


def load_training_summary(model_dir: str | Path) -> dict[str, Any]:
    """What the training step recorded beside the weights (training_summary.json), or {}."""
    path = Path(model_dir) / "training_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def merge_lora(base_dir: str | Path, lora_dir: str | Path):
    """The adapter applied to its base model and merged into the weights: a plain transformers model."""
    return load_trained_model(lora_dir, base_dir).merge_and_unload().eval()


def choose_model(select: str, scores: dict[str, float]) -> tuple[str, str]:
    """(selected model, the reason in words) from `export.select` and the validation macro-F1 of each candidate."""
    if select not in ("best", *CANDIDATES):
        raise ValueError(f"export.select must be best, lora or baseline, got {select!r}")
    shown = ", ".join(f"{name} {scores[name]:.4f}" for name in CANDIDATES if name in scores)
    if "baseline" not in scores:
        return "lora", f"only the LoRA model was given (validation macro-F1 {shown})"
    if select == "best":
        if scores["lora"] == scores["baseline"]:
            return "lora", f"equal validation macro-F1 ({shown}; export.select=best): LoRA, the smaller, on a tie"
        selected = "lora" if scores["lora"] > scores["baseline"] else "baseline"
        return selected, f"higher validation macro-F1 ({shown}; export.select=best)"
    return select, f"export.select={select} (validation macro-F1 {shown})"
