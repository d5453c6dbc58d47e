"""Training and validation curves as TensorBoard event files.

Written to $AIP_TENSORBOARD_LOG_DIR (Vertex AI sets it in a custom job linked to a Vertex AI TensorBoard,
`vertex.train.tensorboard`) and to `train.tensorboard_dir` when set, each under a `<mode>` subdirectory (one
TensorBoard run per model). Every logged value of the Trainer becomes a scalar at its optimizer step: `train/loss`,
`train/learning_rate`, `train/grad_norm` per epoch, `eval/loss`, `eval/macro_f1`, `eval/accuracy`, ... per
evaluation. The writer works in a local directory; after each log the event files are copied to the
destinations, each replaced whole (Cloud Storage FUSE on Vertex AI neither appends to an object in place nor
shows a file before it is closed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from banglasenti.storage.artifacts import fuse_path

TENSORBOARD_ENV = "AIP_TENSORBOARD_LOG_DIR"
RUN_SUMMARY_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
)  # the Trainer's end-of-run summary, not a curve


def curve_destinations(configured: str, mode: str) -> list[Path]:
    """$AIP_TENSORBOARD_LOG_DIR/<mode> when set, and `configured`/<mode> when set (gs:// through /gcs/)."""
    bases = [base for base in (os.environ.get(TENSORBOARD_ENV, ""), configured) if base]
    return list(dict.fromkeys(Path(fuse_path(base.rstrip("/"))) / mode for base in bases))


def scalar_tag(key: str) -> str:
    return f"eval/{key[len('eval_') :]}" if key.startswith("eval_") else f"train/{key}"


def curves_callback(configured: str, mode: str) -> CurveWriter | None:
    """A Trainer callback writing the curves, or None when there is nowhere to write them."""
    destinations = curve_destinations(configured, mode)
    return CurveWriter(destinations) if destinations else None


class CurveWriter(TrainerCallback):
    """Scalars of every log until training ends (the later evaluation of the best epoch is not a curve point),
    copied to each of `destinations` after every log."""

    def __init__(self, destinations: list[Path]):
        from torch.utils.tensorboard import SummaryWriter

        self.destinations = destinations
        self.local = Path(tempfile.mkdtemp(prefix="tensorboard-"))
        self.writer: SummaryWriter | None = SummaryWriter(log_dir=str(self.local))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is None or not state.is_world_process_zero:
            return
        for key, value in (logs or {}).items():
            if (
                key == "epoch"
                or key in RUN_SUMMARY_KEYS
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                continue
            self.writer.add_scalar(scalar_tag(key), float(value), state.global_step)
        self.writer.flush()
        self._publish()

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is None:
            return
        self.writer.close()
        self.writer = None
        self._publish()
        shutil.rmtree(self.local, ignore_errors=True)

    def _publish(self) -> None:
        for dest in self.destinations:
            dest.mkdir(parents=True, exist_ok=True)
            for event_file in sorted(self.local.iterdir()):
                # the temporary name must not contain "tfevents", or readers would load it as a second file
                tmp = dest / f".partial-{os.getpid()}-{event_file.stat().st_ino}"
                try:
                    shutil.copyfile(event_file, tmp)
                    os.replace(tmp, dest / event_file.name)
                finally:
                    tmp.unlink(missing_ok=True)
