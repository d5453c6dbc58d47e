"""train-lora / train-baseline: one Hugging Face Trainer behind two components.

    python -m components.train --mode lora --base-model runs/base --tokenized runs/tok --output-dir runs/lora
    python -m components.train --mode baseline --base-model runs/base --tokenized runs/tok --output-dir runs/full

LoRA (PEFT, task_type SEQ_CLS: the classifier head is trained through modules_to_save) or full fine-tuning;
AdamW with linear warmup and decay, grad-norm clipping, val macro-F1 every epoch, best epoch kept, early
stopping, one seed for init, dropout and shuffling, batches grouped by length and padded to the buckets.
The output directory is a save_pretrained directory (adapter + head for LoRA, full weights for the
baseline) with the tokenizer.

Checkpoints (every `train.checkpoint_steps` steps and every epoch) go to `train.checkpoint_dir`, else
$AIP_CHECKPOINT_DIR on Vertex AI, else beside the output; a killed run started again with the same output
location resumes from the last intact one and ends as an uninterrupted run would (components/checkpoints.py).
"""

import json
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.config import CLASS_NAMES, NUM_CLASSES, Config
from components.kfp_support import lightweight_component
from components.storage import atomic_directory, atomic_file, read_parquet, require_model_dir

Mode = Literal["lora", "baseline"]
MODES: tuple[str, ...] = ("lora", "baseline")


class BucketCollator:
    """Stack pre-padded examples; a batch takes the largest bucket in it (still a bucket length)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            ids[row, :n] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            mask[row, :n] = torch.as_tensor(feature["attention_mask"], dtype=torch.long)
        labels = torch.as_tensor([f["label"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def load_tokenized_split(tokenized_dir: str | Path, name: str):
    """A tokenized split as a datasets.Dataset (input_ids, attention_mask, label, length)."""
    import datasets

    frame = read_parquet(Path(tokenized_dir) / f"{name}.parquet", ["input_ids", "attention_mask", "label", "length"])
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def load_base_classifier(base_dir: str | Path):
    """The base encoder with a fresh 3-class head (id2label set)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(require_model_dir(base_dir)),
        use_safetensors=True,
        num_labels=NUM_CLASSES,
        id2label=dict(enumerate(CLASS_NAMES)),
        label2id={name: i for i, name in enumerate(CLASS_NAMES)},
    )


def build_model(mode: Mode, base_dir: str | Path, cfg: Config):
    """The model to train: the base classifier, wrapped with LoRA adapters in lora mode."""
    model = load_base_classifier(base_dir)
    if mode == "baseline":
        return model
    from peft import LoraConfig, TaskType, get_peft_model

    targets: str | list[str] = cfg.lora.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    peft_config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets,
    )
    return get_peft_model(model, peft_config)


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": total}


def compute_val_metrics(eval_pred) -> dict[str, float]:
    from components.metrics import headline_metrics

    logits, labels = eval_pred
    return headline_metrics(labels, logits.argmax(axis=-1))


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-epoch train loss, val loss and val metrics from the Trainer's log."""
    epochs: dict[int, dict[str, float]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = epochs.setdefault(round(entry["epoch"]), {"epoch": round(entry["epoch"])})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        for key in ("eval_loss", "eval_macro_f1", "eval_accuracy", "eval_weighted_f1"):
            if key in entry:
                row[key.replace("eval_", "val_")] = float(entry[key])
    return [epochs[k] for k in sorted(epochs)]


def learning_rate(mode: Mode, cfg: Config) -> float:
    return cfg.train.lora_learning_rate if mode == "lora" else cfg.train.baseline_learning_rate


def training_arguments(mode: Mode, cfg: Config, checkpoint_dir: str):
    import torch
    from transformers import TrainingArguments

    t = cfg.train
    return TrainingArguments(
        output_dir=checkpoint_dir,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        learning_rate=learning_rate(mode, cfg),
        lr_scheduler_type="linear",
        warmup_steps=t.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim="adamw_torch",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,  # optimizer, scheduler and RNG states too: what resuming needs
    )


def train_model(mode: Mode, cfg: Config, base_dir: str | Path, tokenized_dir: str | Path,
                out_dir: str | Path) -> dict[str, Any]:
    """Train, keep the best epoch by val macro-F1, save it to `out_dir` (atomically); return the summary."""
    from transformers import EarlyStoppingCallback, set_seed

    from components.checkpoints import (
        check_run_identity,
        checkpoint_root,
        latest_valid_checkpoint,
        resumable_trainer_class,
        stop_on_sigterm,
    )
    from components.tokenization import load_tokenizer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(base_dir)
    train_set = load_tokenized_split(tokenized_dir, "train")
    val_set = load_tokenized_split(tokenized_dir, "val")
    model = build_model(mode, base_dir, cfg)
    counts = parameter_counts(model)
    out_dir = Path(out_dir)
    ckpt = checkpoint_root(cfg.train.checkpoint_dir, out_dir, mode)
    check_run_identity(ckpt, {"mode": mode, "config": cfg.model_dump(mode="json")})
    resume = latest_valid_checkpoint(ckpt)
    if resume is not None:
        print(f"resuming from {resume}", flush=True)
    callbacks = []
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    with stop_on_sigterm() as stop:
        trainer = resumable_trainer_class()(
            model=model,
            args=training_arguments(mode, cfg, str(ckpt)),
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=BucketCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            compute_metrics=compute_val_metrics,
            callbacks=callbacks,
            checkpoint_steps=cfg.train.checkpoint_steps,
            stop=stop,
            resume_from=str(resume) if resume else None,
        )
        start = time.monotonic()
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        wall = time.monotonic() - start
    best = trainer.evaluate()
    history = epoch_history(trainer.state.log_history)
    summary = summarize(mode, cfg, counts, history, best, result, wall, str(trainer.args.device))
    summary["final_train_loss"] = trainer.whole_run_training_loss()
    summary["resumed_from_step"] = int(resume.name.split("-")[1]) if resume else 0
    with atomic_directory(out_dir) as tmp:
        trainer.save_model(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the summary records the settings
        (tmp / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(ckpt, ignore_errors=True)
    return summary


def summarize(mode: Mode, cfg: Config, counts: dict[str, int], history: list[dict[str, float]],
              best: dict[str, float], result, wall: float, device: str) -> dict[str, Any]:
    """The training summary: best val scores, curves, sizes, speed and the settings behind them."""
    from components.runtime import library_versions

    summary: dict[str, Any] = {
        "mode": mode,
        **counts,
        "trainable_share": round(counts["trainable_parameters"] / counts["total_parameters"], 6),
        "best_val_macro_f1": float(best["eval_macro_f1"]),
        "best_val_accuracy": float(best["eval_accuracy"]),
        "best_epoch": max(history, key=lambda r: r.get("val_macro_f1", -1.0))["epoch"] if history else 0,
        "epochs_run": len(history),
        "final_train_loss": float(result.training_loss),
        "wall_seconds": round(wall, 2),
        "train_examples_per_second": round(float(result.metrics["train_samples_per_second"]), 2),
        "learning_rate": learning_rate(mode, cfg),
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
        "device": device,
        "history": history,
        "libraries": library_versions(),
    }
    if mode == "lora":
        summary["lora"] = cfg.lora.model_dump()
    return summary


SCALAR_METRICS = ("best_val_macro_f1", "best_val_accuracy", "best_epoch", "epochs_run", "final_train_loss",
                  "trainable_parameters", "total_parameters", "wall_seconds", "train_examples_per_second")


def run_train(mode: Mode, config_json: str, overrides: dict[str, Any], base_dir: str, tokenized_dir: str,
              out_dir: str) -> dict[str, Any]:
    """Entry point of both KFP components (and of the command line)."""
    from components.config import config_from_json
    from components.runtime import quiet_libraries

    quiet_libraries()
    cfg = config_from_json(config_json, overrides)
    return train_model(mode, cfg, base_dir, tokenized_dir, out_dir)


def publish(mode: Mode, summary: dict[str, Any], model_artifact, metrics_artifact) -> None:
    """Lineage metadata on the Model; per-model scalar keys (lora_*, baseline_*) on the Metrics, whose file
    holds the per-epoch curves (Vertex Experiments takes only scalars from metadata)."""
    model_artifact.metadata.update(summary)
    for key in SCALAR_METRICS:
        metrics_artifact.log_metric(f"{mode}_{key}", float(summary[key]))
    with atomic_file(metrics_artifact.path) as tmp:
        tmp.write_text(json.dumps({"model": mode, "history": summary["history"]}, indent=2), encoding="utf-8")


def train_step(mode: Mode, config_json: str, overrides: dict[str, Any], base_model, tokenized, model,
               metrics) -> None:
    """What both training components do with their artifacts."""
    summary = run_train(mode, config_json, overrides, base_model.path, tokenized.path, model.path)
    publish(mode, summary, model, metrics)


@lightweight_component
def train_lora(
    config_json: str,
    lora_r: int,
    lora_alpha: int,
    lora_target_modules: list,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Fine-tune LoRA adapters and the classifier head."""
    from components.train import train_step

    overrides = {"lora.r": lora_r, "lora.alpha": lora_alpha, "lora.target_modules": lora_target_modules,
                 "train.lora_learning_rate": learning_rate, "train.epochs": epochs,
                 "train.batch_size": batch_size, "train.seed": seed}
    train_step("lora", config_json, overrides, base_model, tokenized, model, metrics)


@lightweight_component
def train_baseline(
    config_json: str,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    seed: int,
    base_model: Input[Model],
    tokenized: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Fully fine-tune every weight (the baseline)."""
    from components.train import train_step

    overrides = {"train.baseline_learning_rate": learning_rate, "train.epochs": epochs,
                 "train.batch_size": batch_size, "train.seed": seed}
    train_step("baseline", config_json, overrides, base_model, tokenized, model, metrics)


def main(argv: list[str] | None = None) -> int:
    from components.cli import base_parser, load_cli_config, run_cli

    parser = base_parser(__doc__)
    parser.add_argument("--mode", choices=MODES, required=True, help="lora adapters or full fine-tuning")
    parser.add_argument("--base-model", required=True, help="base model directory")
    parser.add_argument("--tokenized", required=True, help="directory of tokenized splits")
    parser.add_argument("--output-dir", required=True, help="directory to save the trained model into")

    def work(args) -> None:
        cfg = load_cli_config(args)
        summary = run_train(args.mode, cfg.to_json(), {}, args.base_model, args.tokenized, args.output_dir)
        print(json.dumps({k: summary[k] for k in SCALAR_METRICS}))

    return run_cli(parser, work, argv)


if __name__ == "__main__":
    raise SystemExit(main())
