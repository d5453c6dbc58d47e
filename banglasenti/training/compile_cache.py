"""Persistent XLA compilation cache: a job loads the graphs an earlier job compiled instead of compiling them.

`train.compile_cache_dir` names the location; `auto` is `<pipeline root>/xla-compile-cache` on Vertex AI (read
through the /gcs/ Cloud Storage FUSE mount, so every job of every run shares it) and `xla-compile-cache` beside
the output directory elsewhere (a local run's own); an empty value turns the cache off. Entries are files keyed
by torch_xla on the graph's hash, each written once; the directory is split by PJRT device and torch_xla
version, so other hardware or another release never reads them.

torch_xla reads the location once, when its computation cache first starts: `setup_compile_cache` must run
before SPMD starts and before any tensor reaches the device (runner.py calls it before `prepare_placement`).
"""

from __future__ import annotations

import os
from pathlib import Path

from banglasenti.config.schema import Config
from banglasenti.runtime.private_api import private_attr
from banglasenti.storage.artifacts import fuse_path

CACHE_DIR_NAME = "xla-compile-cache"
PATH_ENV = "XLA_PERSISTENT_CACHE_PATH"  # what torch_xla.runtime.initialize_cache sets
VERTEX_JOB_ENV = "CLOUD_ML_JOB_ID"  # set by Vertex AI inside a custom job
CHECKPOINT_ENV = "AIP_CHECKPOINT_DIR"


def cache_location(cfg: Config, out_dir: str | Path) -> Path | None:
    """The cache's base directory for `cfg` in this environment; None when it is turned off."""
    setting = cfg.train.compile_cache_dir
    if not setting:
        return None
    if setting != "auto":
        return Path(fuse_path(setting))
    if os.environ.get(VERTEX_JOB_ENV):
        root = cfg.vertex.effective_pipeline_root()
        if root:
            return Path(fuse_path(root)) / CACHE_DIR_NAME
        if os.environ.get(CHECKPOINT_ENV):  # a template compiled without a bucket: the job's output directory
            return Path(fuse_path(os.environ[CHECKPOINT_ENV])).parent / CACHE_DIR_NAME
    return Path(out_dir).parent / CACHE_DIR_NAME


def setup_compile_cache(cfg: Config, out_dir: str | Path) -> str | None:
    """Point torch_xla's persistent cache at the configured location (on XLA only); return the directory used.

    Once per process: a location set before (by an earlier call, or $XLA_PERSISTENT_CACHE_PATH) is kept and
    returned, since torch_xla cannot move a cache once it has started.
    """
    from banglasenti.training.device import device_kind

    base = cache_location(cfg, out_dir)
    if base is None or device_kind() != "xla":
        return None
    import torch_xla
    import torch_xla.runtime as xr

    path = base / f"{os.environ.get('PJRT_DEVICE', 'xla').lower()}-torch_xla-{torch_xla.__version__}"
    cache_is_set = private_attr("torch_xla:_XLAC", "_xla_computation_cache_is_initialized")
    if os.environ.get(PATH_ENV) or cache_is_set():
        return os.environ.get(PATH_ENV) or None
    path.mkdir(parents=True, exist_ok=True)
    xr.initialize_cache(str(path), readonly=False)
    return str(path)


def cache_counters() -> dict[str, int]:
    """torch_xla's persistent-cache counters so far: a hit loads a stored graph, a miss compiles and stores one;
    a deserialize failure found the graph stored but could not load it (and compiled it): XLA's CPU backend
    cannot load executables at all ("Deserializing serialized executable not supported"), a TPU can."""
    import torch_xla.debug.metrics as met

    names = {
        "hits": "PersistentCacheHit",
        "misses": "PersistentCacheMiss",
        "loads": "PersistentCacheLoad",
        "deserialize_failures": "PersistentCacheDeserializeFailure",
    }
    return {key: int(met.counter_value(name) or 0) for key, name in names.items()}
