"""Every use of another library's private API, in one table, and the functions that reach it.

The project overrides or reads a few private names of transformers, torch_xla, kfp's local runner, the Vertex AI
SDK and google-cloud-pipeline-components where no public API does the job. Each is listed in PRIVATE with why; code
reaches them only through `private()` / `private_attr()` / `set_private()` (an overridden method is checked with
`require_private()`), and `missing_private_api()` says, for the installed versions, which of them an upgrade has
removed (tests/test_private_api.py fails with that message).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrivateUse:
    package: str  # the distribution whose version decides (importlib.metadata name)
    owner: str  # the module, or module:Class, that holds the name
    name: str
    why: str
    instance: bool = False  # set on instances (in __init__ or training): looked for in the owner module's source


TRAINER = "transformers.trainer:Trainer"
PRIVATE = (
    PrivateUse(
        "transformers",
        TRAINER,
        "_run_epoch",
        "trainer: a loader rebuilt for a mid-epoch resume is sharded again (banglasenti/training/trainer.py)",
    ),
    PrivateUse(
        "transformers",
        "transformers.trainer",
        "skip_first_batches",
        "trainer: the loader of a mid-epoch resume, wrapped to be sharded (the name the Trainer calls)",
    ),
    PrivateUse("transformers", TRAINER, "_get_train_sampler", "trainer: the shuffle depends on (seed, epoch) only"),
    PrivateUse(
        "transformers",
        TRAINER,
        "_save_checkpoint",
        "trainer: manifests and the running loss saved with every checkpoint",
    ),
    PrivateUse("transformers", TRAINER, "_tr_loss", "trainer: the running loss in a checkpoint", instance=True),
    PrivateUse(
        "transformers", TRAINER, "_total_loss_scalar", "trainer: the running loss in a checkpoint", instance=True
    ),
    PrivateUse(
        "transformers", TRAINER, "_globalstep_last_logged", "trainer: the running loss in a checkpoint", instance=True
    ),
    PrivateUse(
        "torch_xla",
        "torch_xla.distributed.parallel_loader:MpDeviceLoader",
        "_parallel_loader_kwargs",
        "device: batches sharded over the SPMD mesh (banglasenti/training/device.py)",
        instance=True,
    ),
    PrivateUse("torch_xla", "torch_xla:_XLAC", "_get_xla_sharding_spec", "device, diagnostics: a tensor's sharding"),
    PrivateUse(
        "torch_xla", "torch_xla:_XLAC", "_get_xla_tensor_shape_type", "device: the element type XLA stores a tensor in"
    ),
    PrivateUse(
        "torch_xla",
        "torch_xla:_XLAC",
        "_xla_computation_cache_is_initialized",
        "compile_cache: the persistent cache is set once per process",
    ),
    PrivateUse(
        "google-cloud-aiplatform",
        "google.cloud.aiplatform.pipeline_jobs:PipelineJob",
        "_gca_resource",
        "submit: the request job.submit() would send (pipelines/submit.py)",
        instance=True,
    ),
    PrivateUse(
        "torch_xla", "torch_xla._internal.tpu", "version", "diagnostics: the TPU generation in the smoke report"
    ),
    PrivateUse(
        "transformers",
        "transformers.configuration_utils:PretrainedConfig",
        "_attn_implementation",
        "packing: the attention a packed row's block-diagonal mask is built for (boolean or additive)",
    ),
    PrivateUse(
        "kfp",
        "kfp.local.docker_task_handler",
        "run_docker_container",
        "container_run: DockerRunner's containers started so that a failed step's exit status is read "
        "(banglasenti/local/container_runner.py checks its signature and caller)",
    ),
    PrivateUse(
        "google-cloud-pipeline-components",
        "google_cloud_pipeline_components._placeholders",
        "PROJECT_ID_PLACEHOLDER",
        "registry: the pipeline job's project (pipelines/registry_upload.py)",
    ),
)


def _use(owner: str, name: str) -> PrivateUse:
    for use in PRIVATE:
        if use.owner == owner and use.name == name:
            return use
    raise KeyError(
        f"{owner}.{name} is not in banglasenti.runtime.private_api.PRIVATE: list it there with why it is used"
    )


def _owner_name(obj: Any) -> str:
    if inspect.ismodule(obj):
        return obj.__name__
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def gone(use: PrivateUse) -> str:
    if _version(use.package) == "?":
        return (
            f"{use.package} is not installed; the project uses its {use.owner.replace(':', '.')}.{use.name} ({use.why})"
        )
    return (
        f"{use.package} {_version(use.package)} has no {use.owner.replace(':', '.')}.{use.name}, which the "
        f"project relies on ({use.why}); use a version that has it or update that code"
    )


def private(obj: Any, name: str, owner: str | None = None) -> Any:
    """`obj.<name>` for a name listed in PRIVATE; a clear error naming the library version when it is gone.
    `owner` is the listed owner when `obj` is an instance (or a class derived from it)."""
    use = _use(owner or _owner_name(obj), name)
    try:
        return getattr(obj, name)
    except AttributeError:
        raise AttributeError(gone(use)) from None


def private_attr(owner: str, name: str) -> Any:
    """`<owner>.<name>` for an entry of PRIVATE given by its owner path (e.g. "torch_xla:_XLAC", the extension
    module torch_xla loads), with the same clear error when it is gone."""
    use = _use(owner, name)
    try:
        return getattr(_resolve(owner), name)
    except (ImportError, AttributeError):
        raise AttributeError(gone(use)) from None


def set_private(obj: Any, name: str, value: Any, owner: str) -> None:
    """Set `obj.<name>` for a name listed in PRIVATE under `owner`."""
    _use(owner, name)
    setattr(obj, name, value)


def require_private(cls: type, name: str) -> None:
    """Before overriding `cls.<name>`: fail clearly if the library no longer has it (an override of a removed
    method would silently never run)."""
    use = _use(_owner_name(cls), name)
    if not hasattr(cls, name):
        raise AttributeError(gone(use))


def _resolve(owner: str) -> Any:
    module, _, qualname = owner.partition(":")
    obj = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


def missing_private_api(packages: tuple[str, ...] | None = None) -> list[str]:
    """What the installed libraries no longer have of PRIVATE (one message each); entries of packages not
    installed (torch_xla outside the XLA environment) are skipped, as are packages not in `packages`."""
    problems = []
    for use in PRIVATE:
        if packages is not None and use.package not in packages:
            continue
        if _version(use.package) == "?":
            continue
        try:
            owner = _resolve(use.owner)
        except (ImportError, AttributeError):
            problems.append(gone(use))
            continue
        if use.instance:  # set in the owner's methods: looked for in its module's source
            source = inspect.getsource(inspect.getmodule(owner) or owner)
            found = re.search(rf"\.{re.escape(use.name)}\b", source) is not None
        else:
            found = hasattr(owner, use.name)
        if not found:
            problems.append(gone(use))
    return problems
