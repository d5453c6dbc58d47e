"""The gcsfuse-semantics mode of local runs and tests: Cloud Storage FUSE's refusals, reproduced locally.

On Vertex AI every artifact is on a Cloud Storage FUSE mount, which refuses to rename a non-empty directory and
has no hard links; a local disk allows both, so a step that relies on them passes locally and dies on Vertex.
`enable(roots)` puts `gcsfuse_site/` (a `sitecustomize`) on PYTHONPATH and names the roots in
$BANGLASENTI_GCSFUSE_ROOTS: this process and every Python process it starts (the local runner's steps) then
fail such operations under the roots with the errors gcsfuse gives. `run_local.py --gcsfuse-semantics`, or
$BANGLASENTI_GCSFUSE_SEMANTICS=1, turns it on for a local run with the pipeline root as the root.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "gcsfuse_site"
ROOTS_ENV = "BANGLASENTI_GCSFUSE_ROOTS"
SWITCH_ENV = "BANGLASENTI_GCSFUSE_SEMANTICS"


def requested(flag: bool = False) -> bool:
    """Whether the mode is asked for: by a command-line flag or by $BANGLASENTI_GCSFUSE_SEMANTICS."""
    return flag or os.environ.get(SWITCH_ENV, "").strip().lower() not in ("", "0", "false", "no")


def environment(roots: Iterable[str | Path], env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the sitecustomize first on PYTHONPATH and `roots` added."""
    env = dict(os.environ if env is None else env)
    paths = [str(SITE_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SITE_DIR)]
    known = [p for p in env.get(ROOTS_ENV, "").split(os.pathsep) if p]
    added = [str(Path(r).resolve()) for r in roots]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[ROOTS_ENV] = os.pathsep.join(dict.fromkeys(known + added))
    return env


def install_here() -> None:
    """Patch this process (idempotent); the patches act only while $BANGLASENTI_GCSFUSE_ROOTS names a root."""
    spec = importlib.util.spec_from_file_location("banglasenti_gcsfuse_site", SITE_DIR / "sitecustomize.py")
    assert spec is not None and spec.loader is not None  # a .py file's spec always has a source loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()


def enable(roots: Iterable[str | Path]) -> None:
    """Turn the mode on for `roots` in this process and in every process it starts from now on."""
    os.environ.update(environment(roots))
    install_here()
