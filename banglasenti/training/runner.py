"""Training one model: LoRA adapters or full fine-tuning with one Hugging Face Trainer.

LoRA (PEFT, task_type SEQ_CLS: the classifier head is trained through modules_to_save) or full fine-tuning;
AdamW with linear warmup and decay, grad-norm clipping, val macro-F1 every epoch, best epoch kept, early
stopping, one seed for init, dropout and shuffling; texts packed into full rows (`tokenize.packing`,
banglasenti/data/packing.py) or batches grouped by length and padded to the buckets. The train-lora and train-baseline
steps (components/train.py) and the smoke step (components/smoke.py) train through `train_model`.
"""

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from banglasenti.config.schema import Config
from banglasenti.data.collation import IGNORED_LABEL, load_tokenized_split
from banglasenti.data.packing import PackedRows, load_packed_split, load_packed_texts, train_rows_for
from banglasenti.models.modeling import load_base_classifier
from banglasenti.runtime.process import progress
from banglasenti.storage.artifacts import committed_directory
from banglasenti.training.device import (
    Placement,
    prepare_placement,
    refuse_xla_downcast,
    static_attention,
    xla_counters,
    xla_element_type,
)

Mode = Literal["lora", "baseline"]


MODES: tuple[str, ...] = ("lora", "baseline")


def build_model(mode: Mode, base_dir: str | Path, cfg: Config, attn_implementation: str | None = None):
    """The model to train: the base classifier, wrapped with LoRA adapters in lora mode."""
    model = load_base_classifier(base_dir, attn_implementation)
    return model if mode == "baseline" else with_lora(model, cfg)


def with_lora(model, cfg: Config):
    """`model` wrapped with the configured LoRA adapters (PEFT SEQ_CLS: the head trained through modules_to_save)."""
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
    from banglasenti.evaluation.metrics import headline_metrics

    logits, labels = eval_pred
    real = labels != IGNORED_LABEL
    return headline_metrics(labels[real], logits[real].argmax(axis=-1))


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per-epoch train loss, val loss and val metrics from the Trainer's log."""
    epochs: dict[int, dict[str, float]] = {}
    for entry in log_history:
        if "epoch" not in entry:
            continue
        row = epochs.setdefault(round(entry["epoch"]), {"epoch": round(entry["epoch"])})
        if "loss" in entry:
            row["train_loss"] = float(entry["loss"])
        for key in ("eval_loss", "eval_macro_f1", "eval_accuracy", "eval_weighted_f1", "eval_texts_scored"):
            if key in entry:
                row[key.replace("eval_", "val_")] = float(entry[key])
    return [epochs[k] for k in sorted(epochs)]


def learning_rate(mode: Mode, cfg: Config) -> float:
    return cfg.train.lora_learning_rate if mode == "lora" else cfg.train.baseline_learning_rate


def batch_rows(per_device_texts: int, cfg: Config, placement: Placement) -> int:
    """The Trainer's evaluation batch size: the global batch in texts, or with packing in rows (whole rows per
    device). Training batches are counted in texts (packed: banglasenti.data.packing.PackedBatchSampler)."""
    from banglasenti.data.packing import rows_per_batch

    if not cfg.tokenize.packing:
        return per_device_texts * placement.devices
    return rows_per_batch(per_device_texts, cfg.tokenize.pack_slots) * placement.devices


def training_epochs(cfg: Config, texts: int, placement: Placement) -> int:
    """Epochs whose packed batches fix the rows per batch: train.epochs, or more where train.max_steps needs them.
    A run cut short by max_steps (a smoke run) thus packs into the rows of the whole run: the same shape, the same
    compiled graph."""
    per_epoch = math.ceil(texts / (placement.per_device_batch * placement.devices))
    return max(cfg.train.epochs, math.ceil(cfg.train.max_steps / per_epoch))


def training_arguments(mode: Mode, cfg: Config, checkpoint_dir: str, placement: Placement):
    """Trainer settings; on XLA the Trainer's one (SPMD) device takes the global batch."""
    from transformers import TrainingArguments

    t = cfg.train
    return TrainingArguments(
        output_dir=checkpoint_dir,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=placement.per_device_batch * placement.devices,
        per_device_eval_batch_size=batch_rows(placement.per_device_eval_batch, cfg, placement),
        bf16=False,  # bf16 is the trainer's own autocast (trainer.py): float32 weights and optimizer states
        learning_rate=learning_rate(mode, cfg),
        lr_scheduler_type="linear",
        warmup_steps=t.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        # XLA: PyTorch's AdamW (torch_xla's "sync-free" AdamW is the same step without found_inf); CPU and
        # CUDA: PyTorch's fused AdamW kernel
        optim="adamw_torch" if placement.kind == "xla" else "adamw_torch_fused",
        eval_accumulation_steps=1 if placement.kind == "xla" else None,  # logits to host per batch, no growing concat
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
        dataloader_pin_memory=placement.kind == "cuda",
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,  # optimizer, scheduler and RNG states too: what resuming needs
    )


def xla_graph_counts(record: dict[str, list[int]]):
    """A callback recording, per epoch, the optimizer steps and XLA's compiles, graph executions and
    device-to-host transfers in the step loop, and the compiles after it (evaluation, logging, checkpointing)."""
    from transformers import TrainerCallback

    for key in (
        "step_loop_steps",
        "step_loop_compiles",
        "step_loop_executions",
        "step_loop_host_transfers",
        "after_loop_compiles",
    ):
        record[key] = []

    class GraphCounts(TrainerCallback):
        def __init__(self):
            self.last: dict[str, int] = {}
            self.first_step = 0

        def _since_last(self) -> dict[str, int]:
            now = xla_counters()
            delta = {key: now[key] - self.last.get(key, 0) for key in now}
            self.last = now
            return delta

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.first_step = state.global_step
            if self.last:
                record["after_loop_compiles"].append(self._since_last()["compiles"])
            else:
                self._since_last()

        def on_epoch_end(self, args, state, control, **kwargs):
            delta = self._since_last()
            record["step_loop_steps"].append(state.global_step - self.first_step)
            record["step_loop_compiles"].append(delta["compiles"])
            record["step_loop_executions"].append(delta["executions"])
            record["step_loop_host_transfers"].append(delta["host_transfers"])

        def on_train_end(self, args, state, control, **kwargs):
            record["after_loop_compiles"].append(self._since_last()["compiles"])

    return GraphCounts()


def xla_storage_types(record: dict[str, list[str]]):
    """A callback recording, at each epoch end, the element types XLA stores the trainable parameters and the
    optimizer states in (float32 master weights: 'f32' only)."""
    from transformers import TrainerCallback

    record["parameters"], record["optimizer_states"] = [], []

    class StorageTypes(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            params = {xla_element_type(p) for p in model.parameters() if p.requires_grad}
            states = {
                xla_element_type(value)
                for per_param in optimizer.state.values()
                for value in per_param.values()
                if hasattr(value, "device") and value.device.type == "xla"
            }
            record["parameters"] = sorted(set(record["parameters"]) | params)
            record["optimizer_states"] = sorted(set(record["optimizer_states"]) | states)

    return StorageTypes()


def train_model(
    mode: Mode,
    cfg: Config,
    base_dir: str | Path,
    tokenized_dir: str | Path,
    out_dir: str | Path,
    callbacks: Sequence = (),
) -> dict[str, Any]:
    """Train, keep the best epoch by val macro-F1, commit it to `out_dir` (manifest last); return the summary.
    `callbacks`: more Trainer callbacks, run after the trainer's own."""
    from transformers import set_seed

    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.training.checkpoints import remove_checkpoints, stop_on_sigterm
    from banglasenti.training.compile_cache import setup_compile_cache
    from banglasenti.training.trainer import SentimentTrainer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    setup_compile_cache(cfg, out_dir)  # before SPMD starts: torch_xla reads the cache location once
    placement = prepare_placement(cfg.train.batch_size, cfg.train.eval_batch_size, cfg.train.precision)
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(base_dir)
    train_set, val_set, packing = training_data(cfg, tokenized_dir, placement)
    model = build_model(mode, base_dir, cfg, static_attention() if placement.static_shapes else None)
    counts = parameter_counts(model)
    out_dir = Path(out_dir)
    ckpt, resume = checkpoint_to_resume(mode, cfg, base_dir, tokenized_dir, out_dir)
    graphs: dict[str, list[int]] = {}
    storage: dict[str, list[str]] = {}
    own_callbacks = training_callbacks(mode, cfg, placement, graphs, storage)
    with stop_on_sigterm() as stop:
        trainer = SentimentTrainer(
            model=model,
            args=training_arguments(mode, cfg, str(ckpt), placement),
            placement=placement,
            pad_token_id=tokenizer.pad_token_id,
            packing=packing,
            train_dataset=train_set,
            eval_dataset=val_set,
            processing_class=tokenizer,
            compute_metrics=compute_val_metrics,
            callbacks=own_callbacks,
            checkpoint_steps=cfg.train.checkpoint_steps,
            stop=stop,
            resume_from=str(resume) if resume else None,
        )
        for callback in callbacks:
            trainer.add_callback(callback)
        if placement.kind == "xla":
            refuse_xla_downcast()  # accelerate sets it on a TPU if asked for bf16 mixed precision
        start = time.monotonic()
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        wall = time.monotonic() - start
    best = trainer.evaluate()
    summary = summarize(mode, cfg, counts, epoch_history(trainer.state.log_history), best, result, wall, placement)
    summary.update(run_facts(trainer, resume, packing, graphs, storage))
    commit_model(trainer, summary, out_dir)
    remove_checkpoints(ckpt)
    return summary


def training_data(cfg: Config, tokenized_dir: str | Path, placement: Placement) -> tuple[Any, Any, PackedRows | None]:
    """The train and val sets, and with packing the rows of both phases' batches (else None)."""
    tok = cfg.tokenize
    if not tok.packing:
        return load_tokenized_split(tokenized_dir, "train"), load_tokenized_split(tokenized_dir, "val"), None
    train_set = load_packed_texts(tokenized_dir, "train")
    val_set = load_packed_split(tokenized_dir, "val", tok.max_length, tok.pack_slots)
    rows = train_rows_for(
        train_set.lengths,
        placement.per_device_batch,
        tok.max_length,
        tok.pack_slots,
        cfg.train.seed,
        training_epochs(cfg, len(train_set), placement),
    )
    packing = PackedRows(
        tok.max_length,
        tok.pack_slots,
        rows * placement.devices,
        batch_rows(placement.per_device_eval_batch, cfg, placement),
    )
    return train_set, val_set, packing


def checkpoint_to_resume(
    mode: Mode, cfg: Config, base_dir: str | Path, tokenized_dir: str | Path, out_dir: Path
) -> tuple[Path, Path | None]:
    """This run's checkpoint directory and the checkpoint in it to resume from (None: start afresh)."""
    from banglasenti.training.checkpoints import (
        checkpoint_root,
        latest_valid_checkpoint,
        run_checkpoint_dir,
        run_identity,
    )

    ckpt = run_checkpoint_dir(
        checkpoint_root(cfg.train.checkpoint_dir, out_dir, mode),
        run_identity(mode, cfg.model_dump(mode="json"), base_dir, tokenized_dir),
    )
    resume = latest_valid_checkpoint(ckpt)
    if resume is not None:
        progress(f"{mode}: resuming from {resume}")
    return ckpt, resume


def training_callbacks(
    mode: Mode, cfg: Config, placement: Placement, graphs: dict[str, list[int]], storage: dict[str, list[str]]
) -> list:
    """The Trainer's callbacks: on XLA the graph counts and storage types (recorded into `graphs` and `storage`),
    TensorBoard curves, the smoke job's recorder, early stopping."""
    from transformers import EarlyStoppingCallback

    from banglasenti.training.diagnostics import run_callbacks

    callbacks = [xla_graph_counts(graphs), xla_storage_types(storage)] if placement.kind == "xla" else []
    callbacks.extend(run_callbacks(cfg, mode))  # TensorBoard curves; the smoke job's recorder
    if cfg.train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience))
    return callbacks


def run_facts(
    trainer,
    resume: Path | None,
    packing: PackedRows | None,
    graphs: dict[str, list[int]],
    storage: dict[str, list[str]],
) -> dict[str, Any]:
    """What the summary adds from the run itself: the whole run's training loss, the step resumed from, the val
    texts and how many the final evaluation scored (the trainer refuses a count that differs), the packed rows,
    and on XLA the graphs, storage types and batch shardings."""
    facts: dict[str, Any] = {
        "final_train_loss": trainer.whole_run_training_loss(),
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
        "val_texts": trainer.eval_texts,
    }
    if packing is not None:
        facts["packing"] = {
            "row_length": packing.row_length,
            "slots": packing.slots,
            "train_rows_per_batch": packing.train_rows,
            "eval_rows_per_batch": packing.eval_rows,
        }
    if graphs:
        facts["xla_graphs"] = graphs
        facts["xla_storage_types"] = storage
        facts["xla_batch_shardings"] = trainer.batch_shardings
    return facts


def commit_model(trainer, summary: dict[str, Any], out_dir: Path) -> None:
    """The best model with its tokenizer and training_summary.json, committed to `out_dir` (manifest last)."""
    with committed_directory(out_dir) as tmp:
        trainer.save_model(str(tmp))
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the summary records the settings
        (tmp / "training_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def summarize(
    mode: Mode,
    cfg: Config,
    counts: dict[str, int],
    history: list[dict[str, float]],
    best: dict[str, float],
    result,
    wall: float,
    placement: Placement,
) -> dict[str, Any]:
    """The training summary: best val scores, curves, sizes, speed and the settings behind them."""
    from banglasenti.runtime.process import library_versions

    summary: dict[str, Any] = {
        "mode": mode,
        "val_texts_scored": int(best["eval_texts_scored"]),
        **counts,
        "trainable_share": round(counts["trainable_parameters"] / counts["total_parameters"], 6),
        "best_val_macro_f1": float(best["eval_macro_f1"]),
        "best_val_accuracy": float(best["eval_accuracy"]),
        "best_epoch": max(history, key=lambda r: r.get("val_macro_f1", -1.0))["epoch"] if history else 0,
        "epochs_run": len(history),
        "optimizer_steps": int(result.global_step),
        "final_train_loss": float(result.training_loss),
        "wall_seconds": round(wall, 2),
        "train_examples_per_second": round(float(result.metrics["train_samples_per_second"]), 2),
        "learning_rate": learning_rate(mode, cfg),
        "batch_size": cfg.train.batch_size,
        "seed": cfg.train.seed,
        "device": placement.kind,
        "placement": placement.metadata(),
        "history": history,
        "libraries": library_versions(),
    }
    if mode == "lora":
        summary["lora"] = cfg.lora.model_dump()
    return summary


SCALAR_METRICS = (
    "best_val_macro_f1",
    "best_val_accuracy",
    "best_epoch",
    "epochs_run",
    "final_train_loss",
    "trainable_parameters",
    "total_parameters",
    "wall_seconds",
    "train_examples_per_second",
)
