"""The TPU branch on XLA's CPU backend: with this directory on PYTHONPATH, accelerate's and transformers'
`is_torch_xla_available(check_is_tpu=True)` answer True whenever torch_xla is available, so a run on
PJRT_DEVICE=CPU takes the code paths it takes on a TPU (accelerate: `XLA_USE_BF16` for bf16 mixed precision,
`xm.mark_step()` on every gradient sync, no autocast; see `accelerate/state.py` and `accelerate/utils/imports.py`).

Each function is wrapped as its module finishes executing, before any other module imports it by name.
"""

import functools
import importlib.abc
import importlib.machinery
import sys

PATCHED = ("accelerate.utils.imports", "transformers.utils.import_utils")


def _tpu_branch(original):
    @functools.wraps(original)
    def is_torch_xla_available(check_is_tpu=False, check_is_gpu=False):
        if check_is_tpu:
            return original()
        return original(check_is_gpu=check_is_gpu)

    return is_torch_xla_available


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        module.is_torch_xla_available = _tpu_branch(module.is_torch_xla_available)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in PATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
