"""Commands run on XLA's CPU backend in a fresh process, with Python's fault handler on.

XLA's CPU runtime (torch_xla 2.9.0, PJRT CPU client, two devices under SPMD) has died by SIGSEGV in the middle
of a training run it otherwise completes: once in CI, and in none of the repeated runs made to reproduce it. Where
Python's fault handler gets to run, the end of stderr shows each thread's Python stack. A run whose outputs are
its own (`rerun_after_crash`) is then run once more from nothing, and the crash, with that stderr, becomes a
warning in the test report; a second crash, or any other failure, fails the test. A TPU runs the same program on
its own PJRT client, not this one.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

from banglasenti.training.compile_cache import PATH_ENV
from tests.conftest import ROOT

TAIL = 4000  # characters of a failed command's stderr shown
DEVICES = 2  # XLA's CPU backend split into two devices (CPU_NUM_DEVICES)
TPU_BRANCH = ROOT / "tests" / "tpu_branch"  # makes accelerate and transformers take their TPU branches


class XlaCpuCrash(UserWarning):
    """XLA's CPU runtime died by SIGSEGV and the command was run again."""


def xla_env(tpu_branch: bool = True, **extra: str) -> dict[str, str]:
    """This environment on XLA's CPU backend with DEVICES devices, the fault handler on, the project importable;
    with `tpu_branch`, accelerate and transformers take their TPU branches. Checkpoints and the compile cache stay
    beside each run's output whatever this shell sets (a crashed run is run again from nothing)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AIP_CHECKPOINT_DIR", "CLOUD_ML_JOB_ID", PATH_ENV)}
    env.update({"PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": str(DEVICES), "PYTHONFAULTHANDLER": "1", **extra})
    paths = [str(TPU_BRANCH)] if tpu_branch else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def empty_directory(path: Path) -> None:
    """Remove everything inside `path` (kept itself); nothing where it does not exist."""
    for child in path.iterdir() if path.exists() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run_on_xla(
    cmd: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path,
    timeout: float,
    rerun_after_crash: Sequence[Path] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` (stdout and stderr captured); where it dies by SIGSEGV and `rerun_after_crash` names the
    directories it writes into (`[]`: none, its output is stdout), empty them, warn with the end of its stderr and
    run it once more. `None`: never run again."""
    env = {**env, "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != -signal.SIGSEGV or rerun_after_crash is None:
        return done
    warnings.warn(
        XlaCpuCrash(
            f"SIGSEGV in `{shlex.join(map(str, cmd))[:300]}`; ran it again from nothing. "
            f"The end of its stderr:\n{done.stderr[-TAIL:]}"
        ),
        stacklevel=2,
    )
    for path in rerun_after_crash:
        empty_directory(path)
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def failure_tail(done: subprocess.CompletedProcess[str]) -> str:
    """The end of a failed command's stderr, with how it ended."""
    if done.returncode < 0:
        how = f"killed by signal {-done.returncode}"
        with contextlib.suppress(ValueError):
            how = f"killed by {signal.Signals(-done.returncode).name}"
    else:
        how = f"exit status {done.returncode}"
    return f"{how}\n{done.stderr[-TAIL:]}"
