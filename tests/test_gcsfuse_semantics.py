"""The gcsfuse-semantics mode: it refuses what Cloud Storage FUSE refuses, in this process and in the steps
the KFP local runner starts, and lets through what the mount allows."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from banglasenti.local import gcsfuse_semantics as gcsfuse
from tests.conftest import ROOT

PROBE = r"""
import errno, json, os, shutil, sys, tempfile
from pathlib import Path

root, outside = Path(sys.argv[1]), Path(sys.argv[2])

def attempt(fn):
    try:
        fn()
        return 0
    except OSError as err:
        return err.errno

def old_atomic_directory():  # how directory outputs were written before: a temporary directory renamed
    tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=root))
    (tmp / "config.json").write_text("{}")
    os.replace(tmp, root / "model")

def file_replace():
    (root / ".f.tmp").write_text("new")
    os.replace(root / ".f.tmp", root / "f.json")

for name in ("full1", "full2", "full3"):
    (root / name).mkdir(); (root / name / "w").write_text("1")
(root / "empty").mkdir()
(root / "a.txt").write_text("a")
for name in ("d1", "d2"):
    (outside / name).mkdir(); (outside / name / "w").write_text("1")
result = {
    "sitecustomize": "BANGLASENTI_GCSFUSE_ROOTS" in os.environ and getattr(os.rename, "_banglasenti_gcsfuse", False),
    "old_atomic_directory": attempt(old_atomic_directory),
    "rename_full_dir": attempt(lambda: os.rename(root / "full1", root / "renamed")),
    "path_rename_full_dir": attempt(lambda: (root / "full2").rename(root / "renamed2")),
    "file_replace": attempt(file_replace),
    "rename_empty_dir": attempt(lambda: os.rename(root / "empty", root / "empty2")),
    "link": attempt(lambda: os.link(root / "a.txt", root / "b.txt")),
    "into_mount": attempt(lambda: os.rename(outside / "d1", root / "d1")),
    "outside": attempt(lambda: os.rename(outside / "d2", outside / "d3")),
    "shutil_move_dir": attempt(lambda: shutil.move(root / "full3", root / "moved")),
}
result["moved"] = (root / "moved" / "w").read_text() == "1" and not (root / "full3").exists()
print(json.dumps(result))
"""


def probe(tmp_path: Path, env: dict[str, str]) -> dict:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(root), str(outside)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_mode_refuses_what_gcsfuse_refuses_and_lets_file_replaces_through(tmp_path):
    result = probe(
        tmp_path,
        gcsfuse.environment([tmp_path / "root"], {k: v for k, v in os.environ.items() if k != gcsfuse.ROOTS_ENV}),
    )
    assert result == {
        "sitecustomize": True,
        "old_atomic_directory": errno.EMFILE,  # the bug: base-model died here on Vertex AI
        "rename_full_dir": errno.EMFILE,
        "path_rename_full_dir": errno.EMFILE,
        "file_replace": 0,
        "rename_empty_dir": 0,
        "link": errno.ENOSYS,
        "into_mount": errno.EXDEV,
        "outside": 0,
        "shutil_move_dir": 0,  # falls back to copy and delete, as it does on the mount
        "moved": True,
    }


def test_without_the_mode_the_same_operations_succeed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (gcsfuse.ROOTS_ENV, "PYTHONPATH")}
    result = probe(tmp_path, env)
    assert result["sitecustomize"] is False
    assert result["moved"] is True
    assert {k: v for k, v in result.items() if k not in ("sitecustomize", "moved")} == dict.fromkeys(
        (
            "old_atomic_directory",
            "rename_full_dir",
            "path_rename_full_dir",
            "file_replace",
            "rename_empty_dir",
            "link",
            "into_mount",
            "outside",
            "shutil_move_dir",
        ),
        0,
    )


def test_the_switch(monkeypatch):
    monkeypatch.delenv(gcsfuse.SWITCH_ENV, raising=False)
    assert not gcsfuse.requested() and gcsfuse.requested(True)
    for value, on in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv(gcsfuse.SWITCH_ENV, value)
        assert gcsfuse.requested() is on


@pytest.mark.component
@pytest.mark.parametrize("mode", [True, False])
def test_the_local_runner_starts_its_steps_in_the_mode(tmp_path, monkeypatch, request, mode):
    """kfp.local's SubprocessRunner passes this process's environment to each step's process."""
    from kfp import dsl, local

    @dsl.component(install_kfp_package=False)
    def rename_a_directory(out: dsl.Output[dsl.Artifact]) -> int:
        import os

        os.makedirs(out.path + ".tmp")
        with open(os.path.join(out.path + ".tmp", "w"), "w") as handle:
            handle.write("x")
        try:
            os.replace(out.path + ".tmp", out.path)
            return 0
        except OSError as err:
            return err.errno

    monkeypatch.delenv(gcsfuse.ROOTS_ENV, raising=False)
    if mode:
        request.getfixturevalue("gcsfuse_semantics")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    assert rename_a_directory().outputs["Output"] == (errno.EMFILE if mode else 0)


def test_committed_directories_need_no_directory_rename(gcsfuse_semantics):
    from banglasenti.storage.artifacts import committed_directory, require_committed

    tmp_path = gcsfuse_semantics
    with pytest.raises(OSError) as refused:  # the mode is on in this process
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_text("1")
        os.replace(tmp_path / "d", tmp_path / "e")
    assert refused.value.errno == errno.EMFILE
    out = tmp_path / "model"
    for content in ("first", "second"):  # a write, then a rewrite
        with committed_directory(out):
            (out / "sub").mkdir()
            (out / "sub" / "w.txt").write_text(content)
    assert require_committed(out) == out and (out / "sub" / "w.txt").read_text() == "second"
