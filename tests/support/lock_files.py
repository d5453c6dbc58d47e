"""The project's locks as tests read them: containers/lock_changes.py's parser, loaded from its file (containers/
is not a package), and each lock's versions by name."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "containers" / "locks"
# The folder whose locks the environments were built from: `make upgrade-check` points it at its new locks.
LOCK_DIR_ENV = "BANGLASENTI_LOCK_DIR"

_spec = importlib.util.spec_from_file_location("lock_changes", ROOT / "containers" / "lock_changes.py")
lock_changes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_changes)
read_lock = lock_changes.read_lock


def lock_versions(name: str, folder: Path = LOCKS) -> dict[str, str]:
    return lock_changes.lock_versions(folder / f"{name}.txt")


def environment_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or LOCKS)
