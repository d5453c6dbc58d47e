"""Where training runs: XLA (TPU, or XLA's CPU backend), CUDA or the CPU; its precision; data parallelism.

XLA is chosen when torch_xla is importable and PJRT_DEVICE is set (Vertex AI TPU images set PJRT_DEVICE=TPU;
PJRT_DEVICE=CPU with CPU_NUM_DEVICES=N runs the same path on this CPU). On XLA one process drives every local
device through SPMD: the parameters are replicated and each batch is sharded along its first dimension over a
one-axis mesh ("data"), so XLA inserts the gradient all-reduce. The Trainer then sees one device and the
global batch (per-device batch x devices).

Precision has one path on every device: float32 weights and optimizer states, and bf16 autocast around the
forward pass and loss when the precision is bf16 (banglasenti/training/trainer.py). torch_xla's XLA_USE_BF16 and
XLA_DOWNCAST_BF16 (which accelerate sets on a TPU for bf16 mixed precision) store every float32 tensor as bf16,
so that small updates vanish: training refuses to start when either is set.

Hub kernels are off on XLA: transformers >= 5.25 calls `kernels.kernelize` for the model's device at every
`model.train()`/`model.eval()` unless told not to, and kernels refuses the 'xla' device (a TPU reports 'xla' too).
Every model load passes `use_kernels=False` (banglasenti/models/modeling.py); choosing XLA also sets USE_HUB_KERNELS=0
for the process, before any model is loaded, so a load that does not go through the project stays off as well.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from banglasenti.runtime.private_api import private, private_attr

DeviceKind = Literal["xla", "cuda", "cpu"]
Precision = Literal["bf16", "fp32"]
MESH_AXIS = "data"
DOWNCAST_ENV = ("XLA_USE_BF16", "XLA_DOWNCAST_BF16")
MP_DEVICE_LOADER = "torch_xla.distributed.parallel_loader:MpDeviceLoader"
HUB_KERNELS_ENV = "USE_HUB_KERNELS"  # transformers' switch for hub kernels (integrations/hub_kernels.py)


@dataclass(frozen=True)
class Placement:
    """The device, precision and batch layout of one training run."""

    kind: DeviceKind
    devices: int
    precision: Precision
    per_device_batch: int
    per_device_eval_batch: int

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.devices

    @property
    def global_eval_batch(self) -> int:
        return self.per_device_eval_batch * self.devices

    @property
    def static_shapes(self) -> bool:
        """XLA compiles a graph per input shape: every batch is padded to its phase's fixed size."""
        return self.kind == "xla"

    def metadata(self) -> dict[str, Any]:
        return {**asdict(self), "global_batch": self.global_batch, "global_eval_batch": self.global_eval_batch}


def device_kind() -> DeviceKind:
    """XLA when torch_xla is importable and PJRT_DEVICE is set, else CUDA when present, else the CPU."""
    if os.environ.get("PJRT_DEVICE") and importlib.util.find_spec("torch_xla") is not None:
        return "xla"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(setting: str, kind: DeviceKind) -> Precision:
    """'auto' is bf16 on XLA (the TPU's native matmul type) and on CUDA cards that support it, fp32 elsewhere."""
    if setting in ("bf16", "fp32"):
        return setting  # type: ignore[return-value]
    if setting != "auto":
        raise ValueError(f"precision must be auto, bf16 or fp32, got {setting!r}")
    if kind == "xla":
        return "bf16"
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def refuse_xla_downcast() -> None:
    """Raise when torch_xla is told to store float32 tensors as bf16 (weights, gradients, optimizer states)."""
    for name in DOWNCAST_ENV:
        value = os.environ.get(name, "")
        if value not in ("", "0"):
            raise RuntimeError(
                f"{name}={value} is set: torch_xla would keep weights and optimizer states in bf16 "
                "and drop small updates; unset it (train.precision: bf16 autocasts on its own)"
            )


def disable_hub_kernels() -> None:
    """Hub kernels off for this process, whatever the environment said: kernels has no 'xla' device."""
    os.environ[HUB_KERNELS_ENV] = "0"


def _xla_mesh_devices() -> int:
    """Switch torch_xla to SPMD (before any tensor is on the device) with a data mesh over all devices."""
    import numpy as np
    import torch_xla.distributed.spmd as xs
    import torch_xla.runtime as xr

    if not xr.is_spmd():
        xr.use_spmd()
    devices = xr.global_runtime_device_count()
    if xs.get_global_mesh() is None:
        xs.set_global_mesh(xs.Mesh(np.arange(devices), (devices,), (MESH_AXIS,)))
    return devices


def prepare_placement(batch_size: int, eval_batch_size: int, precision: str = "auto") -> Placement:
    """Pick the device; on XLA, set up SPMD over every local device. Call before the model is moved."""
    kind = device_kind()
    if kind == "xla":
        refuse_xla_downcast()
        disable_hub_kernels()
    devices = _xla_mesh_devices() if kind == "xla" else 1
    return Placement(
        kind=kind,
        devices=devices,
        precision=resolve_precision(precision, kind),
        per_device_batch=batch_size,
        per_device_eval_batch=eval_batch_size,
    )


def shard_batches(loader):
    """On SPMD, shard every 2-D batch tensor along its first dimension over the data axis (1-D labels are
    replicated: SPMD keeps the program's global meaning either way). Without SPMD the loader is returned
    unchanged; under SPMD a loader that is not torch_xla's device loader is an error (its batches would run
    replicated: every device computing the whole global batch)."""
    try:
        import torch_xla.distributed.parallel_loader as pl
        import torch_xla.distributed.spmd as xs
        import torch_xla.runtime as xr
    except ImportError:
        return loader
    if not xr.is_spmd():
        return loader
    if not isinstance(loader, pl.MpDeviceLoader):
        raise TypeError(
            f"cannot shard the batches of a {type(loader).__name__} under SPMD: "
            "expected torch_xla's MpDeviceLoader (what accelerate prepares on XLA)"
        )
    kwargs = private(loader, "_parallel_loader_kwargs", MP_DEVICE_LOADER)
    kwargs["input_sharding"] = xs.ShardingSpec(xs.get_global_mesh(), (MESH_AXIS, None))
    return loader


def xla_sharding(tensor) -> str:
    """How XLA lays `tensor` out over the devices, e.g. '{devices=[2,1]0,1}' (dimension 0 split in two)."""
    return private_attr("torch_xla:_XLAC", "_get_xla_sharding_spec")(tensor) or "{unset}"


def xla_element_type(tensor) -> str:
    """The element type XLA stores `tensor` in ('f32', 'bf16'): `tensor.dtype` reads float32 even when torch_xla
    stores it as bf16 (XLA_USE_BF16)."""
    return private_attr("torch_xla:_XLAC", "_get_xla_tensor_shape_type")(tensor)


def xla_counters() -> dict[str, int]:
    """Graphs compiled, graphs executed and device-to-host transfers so far (zeros where XLA is not in use)."""
    if device_kind() != "xla":
        return {"compiles": 0, "executions": 0, "host_transfers": 0}
    import torch_xla.core.xla_model as xm
    import torch_xla.debug.metrics as met

    xm.wait_device_ops()  # graphs run asynchronously: count each launched one once it has run

    def count(name: str) -> int:
        data = met.metric_data(name)
        return int(data[0]) if data else 0

    return {
        "compiles": count("CompileTime"),
        "executions": count("ExecuteReplicatedTime") + count("ExecuteTime"),
        "host_transfers": count("TransferFromDeviceTime"),
    }


STATIC_ATTENTION = "sdpa_static_mask"


def static_attention() -> str:
    """Register and name an attention implementation for XLA: PyTorch SDPA with the padding mask always built.
    (Transformers' own SDPA path asks the device whether a mask has any padding, a host sync in every step.)"""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import sdpa_mask

    def sdpa_mask_always(*args, **kwargs):
        kwargs["allow_is_bidirectional_skip"] = False
        kwargs["allow_is_causal_skip"] = False
        return sdpa_mask(*args, **kwargs)

    AttentionInterface.register(STATIC_ATTENTION, sdpa_attention_forward)
    AttentionMaskInterface.register(STATIC_ATTENTION, sdpa_mask_always)
    return STATIC_ATTENTION


def replicated(tensor):
    """`tensor` laid out whole on every device under SPMD (unchanged elsewhere). A sharded tensor read back to the
    host costs a freshly compiled gather program on each read; a replicated one is read as it is."""
    try:
        import torch_xla.distributed.spmd as xs
        import torch_xla.runtime as xr
    except ImportError:
        return tensor
    if not xr.is_spmd() or tensor.device.type != "xla":
        return tensor
    xs.mark_sharding(tensor, xs.get_global_mesh(), (None,) * tensor.dim())
    return tensor
