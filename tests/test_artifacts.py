"""Directory artifacts written in place and committed by a manifest written last; readers refuse the rest."""

import json
import shutil
import signal
import subprocess
import sys

import pytest

from banglasenti.storage.artifacts import (
    ARTIFACT_MANIFEST,
    InputError,
    committed_directory,
    read_parquet,
    require_committed,
    require_model_dir,
)
from tests.conftest import ROOT

WRITING = json.dumps({"state": "writing"})


def manifest(directory):
    return json.loads((directory / ARTIFACT_MANIFEST).read_text())


def test_a_committed_directory_is_readable_by_other_users(tmp_path):
    """A library that writes a file 0600 (safetensors' adapter weights) leaves it readable once committed: the TPU
    image's steps write as root, the CPU image's read as uid 10001."""
    import os

    umask = os.umask(0o022)
    try:
        with committed_directory(tmp_path / "model") as target:
            (target / "sub").mkdir(mode=0o700)
            for name in ("adapter_model.safetensors", "sub/tokenizer.json"):
                (target / name).write_bytes(b"x")
                (target / name).chmod(0o600)
            (target / "run.sh").write_bytes(b"x")
            (target / "run.sh").chmod(0o700)
    finally:
        os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "model").rglob("*")}
    assert modes == {
        "adapter_model.safetensors": 0o644,
        "tokenizer.json": 0o644,
        "run.sh": 0o744,
        ARTIFACT_MANIFEST: 0o644,
        "sub": 0o755,
    }


def test_a_committed_directory_lists_every_file_written_before_its_manifest(tmp_path):
    out = tmp_path / "model"
    with committed_directory(out) as target:
        assert target == out
        assert manifest(out) == {"state": "writing"}  # first: a reader now refuses it
        with pytest.raises(InputError, match="its writer did not finish"):
            require_committed(out)
        (out / "config.json").write_text("{}")
        (out / "sub").mkdir()
        (out / "sub" / "w.bin").write_bytes(b"x" * 10)
    recorded = manifest(out)
    assert recorded["state"] == "committed"
    assert {name: entry["bytes"] for name, entry in recorded["files"].items()} == {"config.json": 2, "sub/w.bin": 10}
    assert require_committed(out) == out
    assert require_committed(out / "sub") == out / "sub"  # a subdirectory (export's merged/) is covered


def test_a_killed_writer_leaves_a_directory_every_reader_refuses(tmp_path):
    out = tmp_path / "tok"
    code = (
        "import os, signal, sys\n"
        "from banglasenti.storage.artifacts import committed_directory\n"
        "with committed_directory(sys.argv[1]) as out:\n"
        "    (out / 'train.parquet').write_bytes(b'PAR1 half written')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL
    assert (out / "train.parquet").exists() and manifest(out) == {"state": "writing"}
    message = (
        f"{out}: uncommitted directory artifact (its writer did not finish (no commit)); run the step that "
        "writes it again"
    )
    with pytest.raises(InputError) as err:
        require_committed(out)
    assert str(err.value) == message and "\n" not in message
    with pytest.raises(InputError, match="uncommitted directory artifact"):
        read_parquet(out / "train.parquet")


@pytest.mark.parametrize(
    "reader",
    ["require_model_dir", "load_tokenizer", "load_tokenized_split", "predict", "base_model_reuse", "select_best"],
)
def test_readers_refuse_an_uncommitted_artifact(reader, base_dir, tokenized_dir, tmp_path):
    from banglasenti.config.schema import ModelConfig
    from banglasenti.data.collation import load_tokenized_split
    from banglasenti.data.encoding import load_tokenizer
    from banglasenti.evaluation.leaderboard import select_best
    from banglasenti.models.backbone import resolve_base_model
    from banglasenti.serving.predict import resolve_model_dir

    source = tokenized_dir if reader == "load_tokenized_split" else base_dir
    broken = tmp_path / "artifact"
    shutil.copytree(source, broken)
    (broken / ARTIFACT_MANIFEST).write_text(WRITING)
    calls = {
        "require_model_dir": lambda: require_model_dir(broken),
        "load_tokenizer": lambda: load_tokenizer(broken),
        "load_tokenized_split": lambda: load_tokenized_split(broken, "train"),
        "predict": lambda: resolve_model_dir(broken),
        "base_model_reuse": lambda: resolve_base_model(ModelConfig(name=str(broken)), [], 128, tmp_path / "out"),
        "select_best": lambda: select_best(
            [str(broken)],
            [
                {
                    "lora": {"r": 4, "alpha": 8},
                    "best_val_macro_f1": 0.5,
                    "trainable_parameters": 1,
                    "epochs_run": 1,
                    "wall_seconds": 1.0,
                }
            ],
            str(tmp_path / "best"),
            str(tmp_path / "board.md"),
        ),
    }
    with pytest.raises(InputError, match=f"{broken}: uncommitted directory artifact"):
        calls[reader]()


def test_a_file_changed_after_the_commit_is_refused(base_dir, tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(base_dir, copy)
    assert require_model_dir(copy) == copy
    (copy / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"config.json has 2 bytes, expected \d+"):
        require_model_dir(copy)


def test_rewriting_an_output_replaces_every_old_file(tmp_path):
    out = tmp_path / "out"
    with committed_directory(out):
        (out / "old.json").write_text("old")
        (out / "keep").mkdir()
        (out / "keep" / "a.txt").write_text("a")
    with committed_directory(out):
        (out / "new.json").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [ARTIFACT_MANIFEST, "new.json"]
    assert list(manifest(out)["files"]) == ["new.json"]
    # An uncommitted leftover (a killed earlier attempt, as a retried step finds it) is cleared the same way.
    (out / ARTIFACT_MANIFEST).write_text(WRITING)
    (out / "partial.bin").write_bytes(b"\0")
    with committed_directory(out):
        (out / "again.json").write_text("{}")
    assert list(manifest(out)["files"]) == ["again.json"] and not (out / "partial.bin").exists()


def test_a_write_that_dies_while_clearing_never_looks_committed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with committed_directory(out):
        (out / "a").mkdir()
        (out / "a" / "w.bin").write_bytes(b"1")

    def dies(path, *args, **kwargs):
        raise OSError("disk gone")

    monkeypatch.setattr(shutil, "rmtree", dies)
    with pytest.raises(OSError, match="disk gone"), committed_directory(out):
        pass
    monkeypatch.undo()
    assert (out / "a" / "w.bin").exists()  # the old content is still there, but no longer committed
    with pytest.raises(InputError, match="its writer did not finish"):
        require_committed(out)


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="bad input"), committed_directory(out):
        (out / "half.json").write_text("{")
        raise InputError("bad input")
    assert not out.exists()


def test_a_directory_the_project_did_not_write_is_never_cleared(tmp_path):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = f"{foreign}: output directory holds files this project did not write"
    with pytest.raises(InputError, match=refused), committed_directory(foreign):
        pass
    assert (foreign / "notes.txt").read_text() == "mine"
    assert require_committed(foreign) == foreign  # and, without a manifest, it reads as a plain directory
