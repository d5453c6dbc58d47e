"""The project's Hugging Face Trainer: `SentimentTrainer`, one class for every training run. Only the training code
imports this module (it imports transformers).

On top of transformers' Trainer:

- static batch shapes on XLA: texts packed into rows (banglasenti/data/packing.py) or padded to the length buckets
  (banglasenti/data/collation.py), each phase's short last batch topped up to that phase's batch size, batches sharded
  over the devices, also in an epoch resumed mid-way: one compiled graph per shape and phase;
- bf16 autocast of its own over float32 weights and optimizer states; losses over the real texts only;
- evaluation that scores every text of the split exactly once, on every device: whole batches are gathered and
  filler rows and empty slots dropped by their label, and the count is checked (accelerate's `gather_for_metrics`
  cuts batches to the split's remainder from the moment its loader has handed out the last batch, and on XLA the
  device loader's prefetching thread takes that batch while earlier ones are still to be evaluated);
- step checkpoints committed by a manifest, a clean stop on SIGTERM and exact resumption: an epoch's order depends
  only on (seed, epoch), the running loss travels in the checkpoint, the XLA device RNG is seeded per step
  (where checkpoints live and which one is resumed: banglasenti/training/checkpoints.py).

Each private name of transformers it overrides or reads goes through banglasenti/runtime/private_api.py.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
import transformers.trainer as hf_trainer
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from banglasenti.data.collation import IGNORED_LABEL, BucketCollator
from banglasenti.data.packing import EpochShuffle, PackedBatchSampler, PackedCollator, PackedRows, packed_forward
from banglasenti.runtime.private_api import TRAINER, private, require_private, set_private
from banglasenti.training.checkpoints import LOSS_STATE, Interrupted, seed_xla_rng, write_manifest
from banglasenti.training.device import Placement, shard_batches, xla_sharding

for _overridden in ("_get_train_sampler", "_save_checkpoint", "_run_epoch"):  # overridden by SentimentTrainer
    require_private(Trainer, _overridden)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped shuffling whose order depends only on (seed, epoch), so a resumed epoch repeats it."""

    def __init__(self, *args, seed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return super().__iter__()


class _Hooks(TrainerCallback):
    """SentimentTrainer's callbacks: the running loss restored, the XLA RNG seeded per step, step checkpoints and
    the checkpoint that a SIGTERM stop saves."""

    def __init__(self, trainer, stop: dict[str, bool]):
        self.trainer, self.stop, self.every = trainer, stop, trainer.checkpoint_steps

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.restore_loss_state()

    def on_step_begin(self, args, state, control, **kwargs):
        if args.device.type == "xla":
            seed_xla_rng(args.seed, state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            control.should_save = True
        if self.stop["requested"]:
            control.should_save = True  # SentimentTrainer._save_checkpoint then raises Interrupted


class EvaluationCountError(RuntimeError):
    """An evaluation scored another number of texts than its split holds."""


def texts_in(dataset) -> int:
    """Texts in an evaluation set: one per row, or per packed slot in a packed set's `labels` lists."""
    if "labels" in dataset.column_names:
        return sum(len(labels) for labels in dataset["labels"])
    return len(dataset)


class SentimentTrainer(Trainer):
    """Trainer with static shapes on XLA, its own bf16 autocast, real-row losses, step checkpoints committed by
    manifests, SIGTERM stops and exact resumption."""

    def __init__(
        self,
        model=None,
        args=None,
        *,
        placement: Placement,
        pad_token_id: int,
        packing: PackedRows | None = None,
        checkpoint_steps: int = 0,
        stop: dict[str, bool] | None = None,
        resume_from: str | None = None,
        **kwargs,
    ):
        fixed = placement.static_shapes
        self.placement = placement
        self.packing = packing
        collator: BucketCollator | PackedCollator
        self.eval_collator: BucketCollator | PackedCollator
        if packing is None:
            self.eval_collator = BucketCollator(pad_token_id, placement.global_eval_batch if fixed else None)
            collator = BucketCollator(pad_token_id, placement.global_batch if fixed else None)
        else:  # rows of packed texts; on XLA every batch topped up to its phase's number of rows
            self.eval_collator = PackedCollator(
                pad_token_id, packing.row_length, packing.slots, packing.eval_rows if fixed else None
            )
            collator = PackedCollator(
                pad_token_id, packing.row_length, packing.slots, packing.train_rows if fixed else None
            )
        super().__init__(model, args, data_collator=collator, **kwargs)
        # The model's loss is already the mean over a batch's real rows (one batch per optimizer step): no
        # item count computed on the device beside the step (on a TPU, accelerate would run it as a graph of
        # its own, through the xm.mark_step() of every gradient sync).
        self.model_accepts_loss_kwargs = False
        self.batch_shardings: dict[str, dict[str, int]] = {"train": {}, "eval": {}}
        self.eval_texts = 0  # texts in the set of the latest evaluation (or prediction) loader
        self.checkpoint_steps = checkpoint_steps
        self.stop = stop if stop is not None else {"requested": False}
        self.resume_from = resume_from
        self.add_callback(_Hooks(self, self.stop))

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """bf16 autocast around the forward pass and loss; weights and optimizer states stay float32."""
        if self.placement.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.args.device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Packed rows: logits per text slot, loss the mean over the filled slots (texts, not rows)."""
        if self.packing is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = packed_forward(model, inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _count_sharding(self, phase: str, inputs) -> None:
        if self.placement.kind == "xla":
            spec = xla_sharding(inputs["input_ids"])
            self.batch_shardings[phase][spec] = self.batch_shardings[phase].get(spec, 0) + 1

    def training_step(self, model, inputs, *args, **kwargs):
        self._count_sharding("train", inputs)
        return super().training_step(model, inputs, *args, **kwargs)

    def prediction_step(self, model, inputs, *args, **kwargs):
        self._count_sharding("eval", inputs)
        return super().prediction_step(model, inputs, *args, **kwargs)

    def get_train_dataloader(self):
        if self.packing is None:
            return shard_batches(super().get_train_dataloader())
        # packed: batches of exactly the batch size in texts (the last: the rest), a fixed number of rows
        texts, p = self.train_dataset, self.packing
        sampler = PackedBatchSampler(
            EpochShuffle(len(texts), self.args.data_seed),
            texts.lengths,
            self.placement.per_device_batch,
            self.placement.devices,
            p.train_rows // self.placement.devices,
            p.row_length,
            p.slots,
        )
        loader = DataLoader(
            texts, batch_sampler=sampler, collate_fn=self.data_collator, pin_memory=self.args.dataloader_pin_memory
        )
        return shard_batches(self.accelerator.prepare(loader))

    def get_eval_dataloader(self, eval_dataset=None):
        self.eval_texts = texts_in(eval_dataset if eval_dataset is not None else self.eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_collator
        try:
            return shard_batches(super().get_eval_dataloader(eval_dataset))
        finally:
            self.data_collator = train_collator

    def get_test_dataloader(self, test_dataset):
        self.eval_texts = texts_in(test_dataset)  # Trainer.predict's loop is checked like an evaluation
        return super().get_test_dataloader(test_dataset)

    def _run_epoch(self, *args, **kwargs):
        # Resuming mid-epoch, the Trainer rebuilds the loader through accelerate's skip_first_batches, which
        # drops the input sharding: shard the rebuilt loader too.
        skip = private(hf_trainer, "skip_first_batches")
        set_private(
            hf_trainer,
            "skip_first_batches",
            lambda loader, num_batches=0: shard_batches(skip(loader, num_batches)),
            "transformers.trainer",
        )
        try:
            return super()._run_epoch(*args, **kwargs)
        finally:
            set_private(hf_trainer, "skip_first_batches", skip, "transformers.trainer")

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Every batch gathered whole (the Trainer resets its gather function after each loop), the texts scored
        counted against the split (`<prefix>_texts_scored`; EvaluationCountError when they differ), and the loss
        recomputed over the real rows: the Trainer's repeats each batch's mean over its rows, filler rows
        included."""
        self.gather_function = self.accelerator.gather
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if output.predictions is None or output.label_ids is None:
            return output
        scored = int((output.label_ids != IGNORED_LABEL).sum())
        expected = self.eval_texts
        if scored != expected:
            raise EvaluationCountError(
                f"{description}: scored {scored} texts of the {expected} in the split (each must be scored once)"
            )
        output.metrics[f"{metric_key_prefix}_texts_scored"] = scored
        output.metrics[f"{metric_key_prefix}_loss"] = real_rows_loss(output.predictions, output.label_ids)
        return output

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            dataset=dataset,
            lengths=dataset[self.args.length_column_name],
            seed=self.args.data_seed,
        )

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        assert self.args.output_dir is not None  # TrainingArguments.__post_init__ sets it
        path = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        (path / "training_args.bin").unlink(missing_ok=True)  # a pickle, never read back
        loss = {
            "tr_loss": float(private(self, "_tr_loss", TRAINER).item()),
            "total_loss_scalar": private(self, "_total_loss_scalar", TRAINER),
            "globalstep_last_logged": private(self, "_globalstep_last_logged", TRAINER),
        }
        (path / LOSS_STATE).write_text(json.dumps(loss), encoding="utf-8")
        write_manifest(path)
        if self.stop["requested"] and self.state.global_step < self.state.max_steps:
            # Leave the loop at once: no epoch-end logging or evaluation that a resumed run would not repeat.
            raise Interrupted(
                f"stopped by SIGTERM at step {self.state.global_step} of {self.state.max_steps}; "
                f"checkpoint saved in {self.args.output_dir}: run again with the same output "
                "location to resume"
            )

    def restore_loss_state(self) -> None:
        """Continue the running loss sums of the interrupted run (else a resumed epoch's loss is partial)."""
        if not self.resume_from:
            return
        saved = json.loads((Path(self.resume_from) / LOSS_STATE).read_text(encoding="utf-8"))
        set_private(self, "_tr_loss", torch.tensor(saved["tr_loss"], device=self.args.device), TRAINER)
        set_private(self, "_total_loss_scalar", saved["total_loss_scalar"], TRAINER)
        set_private(self, "_globalstep_last_logged", saved["globalstep_last_logged"], TRAINER)

    def whole_run_training_loss(self) -> float:
        """Mean training loss over every step of the run, including those before a resume."""
        return private(self, "_total_loss_scalar", TRAINER) / max(self.state.global_step, 1)


def real_rows_loss(logits, labels) -> float:
    """Mean cross-entropy over the rows whose label is not IGNORED_LABEL (float64 on the host)."""
    import numpy as np
    from scipy.special import log_softmax

    real = labels != IGNORED_LABEL
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64)[real], axis=-1)
    return float(-log_probs[np.arange(len(log_probs)), labels[real]].mean())
