"""tests/support/xla_process.py: a command that dies by SIGSEGV runs once more from nothing, with a warning; once
only."""

import signal
import sys

import pytest

from tests.support.xla_process import XlaCpuCrash, failure_tail, run_on_xla

pytestmark = pytest.mark.component

# Dies by signal argv[4] while argv[1] holds fewer than argv[2] crash marks (one is added per crash), after
# writing into the directories argv[3:]; prints what it found in them when it lives.
CRASHES = """
import os, pathlib, signal, sys
marks, limit, sig, outs = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
found = sorted(p.name for out in outs for p in pathlib.Path(out).iterdir())
for out in outs:
    (pathlib.Path(out) / "partial").write_text("half written")
crashes = len(marks.read_text()) if marks.exists() else 0
if crashes < limit:
    marks.write_text("x" * (crashes + 1))
    os.kill(os.getpid(), sig)
print(found)
"""
OUTS = ("out", "cache")


def command(tmp_path, limit: int, sig: signal.Signals = signal.SIGSEGV) -> list[str]:
    for name in OUTS:
        (tmp_path / name / "stale").mkdir(parents=True, exist_ok=True)
    return [
        sys.executable,
        "-c",
        CRASHES,
        str(tmp_path / "marks"),
        str(limit),
        str(int(sig)),
        *(str(tmp_path / name) for name in OUTS),
    ]


def test_a_crash_reruns_once_from_nothing_with_a_warning(tmp_path):
    with pytest.warns(XlaCpuCrash, match="(?s)SIGSEGV in .*ran it again from nothing.*Segmentation fault"):
        done = run_on_xla(
            command(tmp_path, 1), {}, cwd=tmp_path, timeout=60, rerun_after_crash=[tmp_path / name for name in OUTS]
        )
    assert done.returncode == 0, failure_tail(done)
    assert done.stdout.strip() == "[]"  # the crashed run's files and the stale directories were removed first


def test_a_second_crash_fails(tmp_path):
    with pytest.warns(XlaCpuCrash):
        done = run_on_xla(
            command(tmp_path, 2), {}, cwd=tmp_path, timeout=60, rerun_after_crash=[tmp_path / name for name in OUTS]
        )
    assert failure_tail(done).startswith("killed by SIGSEGV")


def test_another_signal_is_not_rerun(tmp_path, recwarn):
    done = run_on_xla(
        command(tmp_path, 1, signal.SIGABRT),
        {},
        cwd=tmp_path,
        timeout=60,
        rerun_after_crash=[tmp_path / name for name in OUTS],
    )
    assert failure_tail(done).startswith("killed by SIGABRT") and not recwarn.list
    assert (tmp_path / "out" / "partial").exists()


def test_no_rerun_where_the_outputs_are_not_its_own(tmp_path, recwarn):
    done = run_on_xla(command(tmp_path, 1), {}, cwd=tmp_path, timeout=60)
    assert done.returncode < 0 and not recwarn.list
    assert (tmp_path / "out" / "partial").exists()


def test_other_failures_are_not_rerun(tmp_path, recwarn):
    done = run_on_xla(
        [sys.executable, "-c", "raise SystemExit(3)"], {}, cwd=tmp_path, timeout=60, rerun_after_crash=[tmp_path]
    )
    assert failure_tail(done).startswith("exit status 3") and not recwarn.list
