"""Lineage metadata: git commit and image from the step's environment, carried input lineage, and the
raw data imported from GCS (read through the emulator)."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from banglasenti.storage.artifacts import SAMPLE_PATH, gcs_client
from banglasenti.storage.lineage import (
    DATA_KEYS,
    GIT_COMMIT_ENV,
    IMAGE_ENV,
    carry,
    git_commit,
    run_context,
    stamp,
    training_lineage,
)
from components.base_model import base_model
from components.prepare import prepare
from components.tokenization import tokenize
from pipelines.compile import compile_pipeline

ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_names_head_and_a_dirty_tree(tmp_path):
    assert git_commit(tmp_path) == ""  # not a repository
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("x")
    assert git_commit(tmp_path) == head  # untracked files do not change what was compiled
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_run_context_reads_the_step_environment(monkeypatch):
    monkeypatch.setenv(GIT_COMMIT_ENV, "abc123")
    monkeypatch.setenv(IMAGE_ENV, "europe-docker.pkg.dev/p/r/tpu:v1")
    monkeypatch.setenv("CLOUD_ML_JOB_ID", "987")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://b/run/train-lora/checkpoints/")
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    assert run_context() == {
        "git_commit": "abc123",
        "image": "europe-docker.pkg.dev/p/r/tpu:v1",
        "vertex_custom_job_id": "987",
        "vertex_checkpoint_dir": "gs://b/run/train-lora/checkpoints/",
    }
    model = dsl.Model(uri="/tmp/m", metadata={"mode": "lora"})
    stamp(model, lr=3e-4)
    assert model.metadata["mode"] == "lora" and model.metadata["git_commit"] == "abc123"
    assert model.metadata["lr"] == 3e-4


def test_carry_takes_over_and_renames_input_lineage():
    split = dsl.Dataset(
        uri="/tmp/t", metadata={"source_uri": "gs://b/d.csv", "source_sha256": "f" * 64, "seed": 7, "rows": 10}
    )
    assert carry(split, DATA_KEYS) == {"source_uri": "gs://b/d.csv", "source_sha256": "f" * 64, "split_seed": 7}
    downstream = dsl.Dataset(uri="/tmp/x", metadata=carry(split, DATA_KEYS))
    assert carry(downstream, DATA_KEYS) == carry(split, DATA_KEYS)  # already renamed keys pass through


def test_training_lineage_records_the_hyperparameters_in_effect(fast_cfg):
    lineage = training_lineage(fast_cfg.with_overrides({"train.epochs": 3, "train.lora_learning_rate": 1e-3}))
    hp = lineage["hyperparameters"]
    assert (hp["epochs"], hp["lora_learning_rate"]) == (3, 1e-3)
    assert hp["warmup_ratio"] == fast_cfg.train.warmup_ratio and hp["max_grad_norm"] == fast_cfg.train.max_grad_norm


@pytest.mark.component
@pytest.mark.parametrize("target", ["local", "vertex"])
def test_every_step_gets_the_commit_it_was_compiled_from(tmp_path, target):
    spec = yaml.safe_load(compile_pipeline(ROOT / "configs" / "local.yaml", tmp_path / "p.yaml", target).read_text())
    commit = git_commit()
    assert commit.split("-")[0] == git(ROOT, "rev-parse", "HEAD")
    text = json.dumps(spec)
    assert text.count(f'"value": "{commit}"') == 7  # five containers and two custom jobs, or seven containers


def test_imported_raw_data_is_read_from_gcs_and_every_artifact_carries_lineage(
    gcs_emulator, tmp_path, fast_cfg, base_dir, monkeypatch
):
    client = gcs_client()
    bucket = client.lookup_bucket("raw-data") or client.create_bucket("raw-data")
    bucket.blob("bangla/sample.csv").upload_from_filename(str(SAMPLE_PATH))
    monkeypatch.setenv(GIT_COMMIT_ENV, "0123abcd")
    monkeypatch.setenv(IMAGE_ENV, "us-docker.pkg.dev/p/banglasenti/cpu:v1")
    cfg = fast_cfg.to_json()
    a = {name: dsl.Dataset(uri=str(tmp_path / name)) for name in ("train", "val", "test")}
    a["report"] = dsl.Markdown(uri=str(tmp_path / "report"))
    raw = dsl.Dataset(uri="gs://raw-data/bangla/sample.csv")  # what the importer hands to prepare
    prepare.python_func(config_json=cfg, data_uri="unused-when-imported", seed=42, raw_data=raw, **a)
    for split in ("train", "val", "test"):
        meta = a[split].metadata
        assert meta["source_uri"] == "gs://raw-data/bangla/sample.csv" and len(meta["source_sha256"]) == 64
        assert meta["git_commit"] == "0123abcd" and meta["image"].endswith("cpu:v1")
        assert sum(meta["label_counts"].values()) == meta["rows"] > 0
    a["base"] = dsl.Model(uri=str(tmp_path / "base"))
    base_model.python_func(config_json=cfg, model_name=str(base_dir), train=a["train"], model=a["base"])
    assert a["base"].metadata["source_sha256"] == a["train"].metadata["source_sha256"]
    assert a["base"].metadata["git_commit"] == "0123abcd"
    a["tok"] = dsl.Dataset(uri=str(tmp_path / "tok"))
    tokenize.python_func(
        config_json=cfg, base_model=a["base"], train=a["train"], val=a["val"], test=a["test"], tokenized=a["tok"]
    )
    tok = a["tok"].metadata
    assert tok["source_uri"] == "gs://raw-data/bangla/sample.csv" and tok["split_seed"] == 42
    assert tok["base_model"] == str(base_dir) and tok["base_model_sha256"] == a["base"].metadata["content_sha256"]
    assert tok["buckets"] == [32, 64, 128] and tok["git_commit"] == "0123abcd"
