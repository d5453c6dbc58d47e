"""Every environment from a lock: the dev venv's and the XLA test environment's locks agree with the images'
locks, the environments hold exactly what their locks pin, and `make upgrade-check` reports changes in a line
each (containers/lock_changes.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.support.lock_files import LOCKS, ROOT, environment_lock_dir, lock_changes, lock_versions, read_lock

CUDA_PACKAGES = re.compile(r"^(triton|nvidia-[a-z0-9-]+)$")  # what PyPI's torch brings for CUDA
DEV_TORCH = "2.13.0+cpu"


def makefile_value(name: str) -> str:
    match = re.search(rf"^{name} :?= (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"Makefile: no {name}"
    return match.group(1)


@pytest.mark.parametrize("name", ["build", "cpu", "tpu", "dev", "xla"])
def test_every_package_of_every_lock_is_pinned_with_hashes(name):
    pins = read_lock(LOCKS / f"{name}.txt")
    assert pins
    assert not [pkg for pkg, (_, hashes) in pins.items() if not hashes]


def test_dev_lock_follows_the_cpu_lock_but_torch():
    """The dev venv tests what the CPU image runs: every common package at the CPU lock's version, with torch
    the one exception, the CPU build the Makefile names, without the CUDA libraries."""
    dev, cpu = lock_versions("dev"), lock_versions("cpu")
    differ = {pkg: (dev[pkg], cpu[pkg]) for pkg in set(dev) & set(cpu) - {"torch"} if dev[pkg] != cpu[pkg]}
    assert not differ, f"dev.txt and cpu.txt disagree (run `make locks`): {differ}"
    assert set(cpu) - set(dev) == {pkg for pkg in cpu if pkg == "torch" or CUDA_PACKAGES.match(pkg)} - {"torch"}
    assert dev["torch"] == DEV_TORCH == makefile_value("DEV_TORCH").removeprefix("torch==")
    assert not [pkg for pkg in dev if CUDA_PACKAGES.match(pkg) or pkg in ("torch-xla", "libtpu")]


def test_xla_lock_is_the_tpu_lock_plus_pytest():
    """The XLA tests run what the TPU runs: every package of the TPU image's lock at its version and hashes, and
    beside them only pytest, pytest-xdist and what they need, at the dev venv's versions."""
    xla, tpu, dev = read_lock(LOCKS / "xla.txt"), read_lock(LOCKS / "tpu.txt"), lock_versions("dev")
    assert {pkg: pin for pkg, pin in xla.items() if pkg in tpu} == tpu
    extra = set(xla) - set(tpu)
    assert {"pytest", "pytest-xdist"} <= extra
    assert {pkg: xla[pkg][0] for pkg in extra} == {pkg: dev[pkg] for pkg in extra}
    assert (xla["torch"][0], xla["torch-xla"][0]) == ("2.9.0", "2.9.0")


def installed_versions() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}


def differences(lock: Path) -> list[str]:
    """What this interpreter's environment holds other than the lock and build.txt pin (the project aside)."""
    pinned = {**lock_changes.lock_versions(lock.parent / "build.txt"), **lock_changes.lock_versions(lock)}
    installed = installed_versions()
    installed.pop("banglasenti-pipeline", None)
    return [
        f"{pkg}: {installed.get(pkg, 'missing')}, locked {ver}"
        for pkg, ver in sorted(pinned.items())
        if installed.get(pkg) != ver
    ] + [f"{pkg} {ver}: not in {lock.name}" for pkg, ver in sorted(installed.items()) if pkg not in pinned]


def test_the_dev_venv_holds_exactly_its_lock():
    lock = environment_lock_dir() / "dev.txt"
    assert not differences(lock), (
        f"{sys.prefix} differs from {lock} (`rm -rf {sys.prefix} && make setup` rebuilds it): {differences(lock)}"
    )


@pytest.mark.xla
def test_the_xla_environment_holds_exactly_its_lock():
    pytest.importorskip("torch_xla", reason="runs in the XLA environment (make test-xla)")
    lock = environment_lock_dir() / "xla.txt"
    assert not differences(lock), (
        f"{sys.prefix} differs from {lock} (`rm -rf {sys.prefix} && make setup-xla` rebuilds it): {differences(lock)}"
    )


# --- containers/lock_changes.py ---------------------------------------------------------------------------------


def write_lock(path: Path, pins: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# a header\n"
        + "".join(
            f"{name}=={version} \\\n    --hash=sha256:{'0' * 64}\n    # via x\n" for name, version in pins.items()
        )
    )


def test_changes_name_each_package_once_with_the_locks_it_moves_in(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    write_lock(old / "tpu.txt", {"transformers": "5.24.0", "torch": "2.9.0", "gone": "1.0"})
    write_lock(new / "tpu.txt", {"transformers": "5.25.0", "torch": "2.9.0", "Kernels": "0.19.1"})
    write_lock(old / "cpu.txt", {"transformers": "5.24.0"})
    write_lock(new / "cpu.txt", {"transformers": "5.25.0"})
    write_lock(old / "only-old.txt", {"a": "1"})
    assert lock_changes.changes(old, new) == [
        "- gone 1.0 (tpu)",
        "+ kernels 0.19.1 (tpu)",
        "transformers 5.24.0 -> 5.25.0 (cpu, tpu)",
    ]
    assert lock_changes.changes(old, old) == []


def test_a_line_that_is_no_exact_pin_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("# header\nrequests>=2 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: not an exact pin: requests>=2"):
        read_lock(bad)
    bad.write_text("    --hash=sha256:" + "0" * 64 + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: a hash before any requirement"):
        read_lock(bad)


def test_lock_changes_command_prints_changes_or_says_none(tmp_path):
    write_lock(tmp_path / "a" / "dev.txt", {"peft": "0.21.2"})
    write_lock(tmp_path / "b" / "dev.txt", {"peft": "0.22.0"})
    script = str(ROOT / "containers" / "lock_changes.py")
    run = subprocess.run(
        [sys.executable, script, str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True, timeout=60
    )
    assert (run.returncode, run.stdout) == (0, "peft 0.21.2 -> 0.22.0 (dev)\n")
    same = subprocess.run(
        [sys.executable, script, str(tmp_path / "a"), str(tmp_path / "a")], capture_output=True, text=True, timeout=60
    )
    assert (same.returncode, same.stdout) == (0, "no version changes\n")
    usage = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "lock_changes.py" in usage.stderr
