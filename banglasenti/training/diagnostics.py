"""What a training run shows about its device: the callbacks runner.py adds to every run, and the recorder of the
smoke job (smoke_run.py).

`run_callbacks` gives the TensorBoard curve writer (banglasenti/training/curves.py) and, inside `recording(record)`, a
recorder that fills `record` with: device kind and count, the SPMD mesh, the sharding of a training batch,
parameter and optimizer-state dtypes (and how many float32 weights hold only bf16 values, which is what
`XLA_USE_BF16` would leave), graphs compiled, compile and step times and persistent-cache lookups (all from
train begin to train end, evaluations included), and torch_xla's metrics report (for the whole process).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

from banglasenti.config.schema import Config
from banglasenti.training.device import device_kind

_RECORDS: list[dict[str, Any]] = []
BF16_ENV = ("XLA_USE_BF16", "XLA_DOWNCAST_BF16")
SAMPLE_VALUES = 4096  # per tensor, for the bf16-exactness share


@contextlib.contextmanager
def recording(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Training runs started inside this block fill `record` (see `DeviceRecorder`)."""
    _RECORDS.append(record)
    try:
        yield record
    finally:
        _RECORDS.remove(record)


def run_callbacks(cfg: Config, mode: str) -> list[TrainerCallback]:
    """The callbacks runner.py adds: TensorBoard curves when asked for, the recorder inside `recording`."""
    from banglasenti.training.curves import curves_callback

    curves = curves_callback(cfg.train.tensorboard_dir, mode)
    callbacks: list[TrainerCallback] = [curves] if curves is not None else []
    if _RECORDS:
        callbacks.append(DeviceRecorder(_RECORDS[-1]))
    return callbacks


def xla_metric(name: str) -> dict[str, float]:
    """Count and total seconds of one torch_xla timing metric (zeros when absent)."""
    import torch_xla.debug.metrics as met

    data = met.metric_data(name)
    return (
        {"count": int(data[0]), "total_seconds": round(data[1] / 1e9, 3)}
        if data
        else {"count": 0, "total_seconds": 0.0}
    )


def xla_device_facts() -> dict[str, Any]:
    """Device type, count, per-device attributes and the global mesh (XLA only)."""
    import torch_xla.distributed.spmd as xs
    import torch_xla.runtime as xr

    facts: dict[str, Any] = {
        "device_type": xr.device_type(),
        "device_count": xr.global_runtime_device_count(),
        "spmd": xr.is_spmd(),
    }
    with contextlib.suppress(Exception):  # attributes differ by platform
        facts["device_attributes"] = [{k: str(v) for k, v in a.items()} for a in xr.global_runtime_device_attributes()]
    if facts["device_type"] == "TPU":
        with contextlib.suppress(Exception):
            from banglasenti.runtime.private_api import private_attr

            facts["tpu_version"] = private_attr("torch_xla._internal.tpu", "version")()
    mesh = xs.get_global_mesh()
    if mesh is not None:
        facts["mesh"] = {
            "shape": [int(n) for n in mesh.mesh_shape],
            "axis_names": list(mesh.axis_names),
            "device_ids": [int(i) for i in mesh.device_ids],
        }
    return facts


def tensor_sharding(tensor) -> str:
    """The XLA sharding annotation of a device tensor ('' when replicated or not on XLA)."""
    if tensor.device.type != "xla":
        return ""
    from banglasenti.training.device import xla_sharding

    spec = xla_sharding(tensor)
    return "" if spec == "{unset}" else spec


def dtype_counts(tensors) -> dict[str, int]:
    """Number of elements per dtype."""
    counts: Counter[str] = Counter()
    for t in tensors:
        counts[str(t.dtype).replace("torch.", "")] += t.numel()
    return dict(counts)


def bf16_exact_share(params) -> float:
    """Share of sampled float32 weight values whose low 16 bits are zero (1.0: the weights are bf16 in effect)."""
    import torch

    exact = total = 0
    for p in params:
        if p.dtype != torch.float32:
            continue
        values = p.detach().cpu().flatten()[:SAMPLE_VALUES]  # a plain transfer: no graph to compile
        bits = values.view(torch.int32) & 0xFFFF
        exact += int((bits == 0).sum())
        total += values.numel()
    return round(exact / total, 6) if total else 0.0


class DeviceRecorder(TrainerCallback):
    """A Trainer callback filling `record` as the run goes (host transfers only at the start and the end)."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        self.xla = device_kind() == "xla"
        self.step_started = 0.0
        self.step_seconds: list[float] = []
        self.hook = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.record["device_kind"] = device_kind()
        self.record["bf16_environment"] = {name: os.environ.get(name, "") for name in BF16_ENV}
        if self.xla:
            self.record.update(xla_device_facts())
            from banglasenti.training.compile_cache import cache_counters

            self.before = {"compile": xla_metric("CompileTime"), "cache": cache_counters()}
        if model is not None:
            self.hook = model.register_forward_pre_hook(self._see_batch, with_kwargs=True)
        self.started = time.monotonic()

    def _see_batch(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and module.training and "batch" not in self.record:
            self.record["batch"] = {
                "input_ids_shape": list(ids.shape),
                "device": str(ids.device),
                "input_ids_sharding": tensor_sharding(ids),
            }
            self.hook.remove()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.monotonic()

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.step_seconds.append(time.monotonic() - self.step_started)
        if optimizer is not None and "optimizer_state_dtypes" not in self.record:
            states = [v for s in optimizer.state.values() for v in s.values() if hasattr(v, "dtype")]
            self.record["optimizer"] = (
                type(getattr(optimizer, "optimizer", optimizer)).__module__
                + "."
                + type(getattr(optimizer, "optimizer", optimizer)).__name__
            )
            self.record["optimizer_state_dtypes"] = dtype_counts(s for s in states if s.dim() > 0)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        seconds = self.step_seconds
        self.record["steps"] = len(seconds)
        self.record["step_seconds"] = {
            "first": round(seconds[0], 3) if seconds else None,
            "median_after_first": round(statistics.median(seconds[1:]), 4) if len(seconds) > 1 else None,
            "total": round(sum(seconds), 3),
        }
        self.record["train_loop_seconds"] = round(time.monotonic() - self.started, 3)
        if self.xla:  # before the weights are read back below
            import torch_xla.debug.metrics as met

            from banglasenti.training.compile_cache import cache_counters

            compile_now, cache_now = xla_metric("CompileTime"), cache_counters()
            self.record["graphs_compiled"] = compile_now["count"] - self.before["compile"]["count"]
            self.record["compile_seconds"] = round(
                compile_now["total_seconds"] - self.before["compile"]["total_seconds"], 3
            )
            self.record["persistent_cache"] = {k: cache_now[k] - self.before["cache"][k] for k in cache_now}
            self.record["compile_cache_path"] = os.environ.get("XLA_PERSISTENT_CACHE_PATH", "")
            self.record["metrics_report"] = met.metrics_report()
        if model is not None:
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.record["parameter_dtypes"] = dtype_counts(model.parameters())
            self.record["trainable_parameter_dtypes"] = dtype_counts(trainable)
            self.record["trainable_bf16_exact_share"] = bf16_exact_share(trainable)
