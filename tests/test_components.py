"""The KFP components' own functions, called through .python_func with tmp_path artifacts."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from kfp import dsl

from components.base_model import base_model
from components.evaluate import evaluate
from components.prepare import prepare
from components.tokenization import tokenize
from components.train import train_baseline, train_lora

pytestmark = pytest.mark.component  # runs the components' functions on a chain of their own


def artifact(cls, path, metadata=None):
    a = cls(uri=str(path), metadata=dict(metadata or {}))
    return a


@pytest.fixture(scope="module")
def chain(tmp_path_factory, fast_cfg):
    """Run every component function in DAG order; returns the artifacts by name."""
    root = tmp_path_factory.mktemp("components")
    cfg = fast_cfg.to_json()
    a = {name: artifact(dsl.Dataset, root / name) for name in ("train", "val", "test")}
    a["data_report"] = artifact(dsl.Markdown, root / "data_report")
    prepare.python_func(
        config_json=cfg,
        data_uri="sample",
        seed=42,
        train=a["train"],
        val=a["val"],
        test=a["test"],
        report=a["data_report"],
    )
    a["base"] = artifact(dsl.Model, root / "base")
    base_model.python_func(config_json=cfg, model_name="tiny", train=a["train"], model=a["base"])
    a["tokenized"] = artifact(dsl.Dataset, root / "tokenized")
    tokenize.python_func(
        config_json=cfg, base_model=a["base"], train=a["train"], val=a["val"], test=a["test"], tokenized=a["tokenized"]
    )
    for name in ("lora", "baseline"):
        a[name] = artifact(dsl.Model, root / name)
        a[f"{name}_metrics"] = artifact(dsl.Metrics, root / f"{name}_metrics")
    shared = {
        "config_json": cfg,
        "epochs": 1,
        "batch_size": 16,
        "seed": 42,
        "base_model": a["base"],
        "tokenized": a["tokenized"],
    }
    train_lora.python_func(
        lora_r=4,
        lora_alpha=8,
        lora_target_modules=["query", "value"],
        learning_rate=2e-3,
        model=a["lora"],
        metrics=a["lora_metrics"],
        **shared,
    )
    train_baseline.python_func(learning_rate=3e-4, model=a["baseline"], metrics=a["baseline_metrics"], **shared)
    for name in ("metrics", "lora_confusion", "baseline_confusion", "reference_confusion"):
        a[name] = artifact(dsl.ClassificationMetrics if "confusion" in name else dsl.Metrics, root / name)
    a["report"] = artifact(dsl.Markdown, root / "report")
    a["html_report"] = artifact(dsl.HTML, root / "html_report")
    evaluate.python_func(
        config_json=cfg,
        base_model=a["base"],
        tokenized=a["tokenized"],
        lora_model=a["lora"],
        baseline_model=a["baseline"],
        train=a["train"],
        val=a["val"],
        test=a["test"],
        data_report=a["data_report"],
        metrics=a["metrics"],
        lora_confusion=a["lora_confusion"],
        baseline_confusion=a["baseline_confusion"],
        reference_confusion=a["reference_confusion"],
        report=a["report"],
        html_report=a["html_report"],
    )
    a["config_json"] = cfg
    return a


def test_prepare_component_metadata(chain):
    train = chain["train"]
    assert train.metadata["rows"] == len(pd.read_parquet(train.path))
    assert train.metadata["source_uri"] == "sample" and len(train.metadata["source_sha256"]) == 64
    assert train.metadata["seed"] == 42
    assert chain["data_report"].metadata["rows_in"] == 694


def test_base_model_component_metadata(chain):
    meta = chain["base"].metadata
    assert meta["kind"] == "tiny" and meta["pretrain_steps"] == 40 and len(meta["content_sha256"]) == 64


def test_tokenize_component_metadata(chain):
    meta = chain["tokenized"].metadata
    assert meta["buckets"] == [32, 64, 128] and meta["max_length"] == 128
    assert 0 < meta["padding_efficiency"] <= 1 and meta["truncation_rate"] == 0


def test_train_components_use_the_run_parameters(chain):
    lora = chain["lora"].metadata
    assert lora["lora"]["r"] == 4 and lora["lora"]["target_modules"] == ["query", "value"]
    assert lora["epochs_run"] == 1 and lora["learning_rate"] == 2e-3
    assert chain["baseline"].metadata["learning_rate"] == 3e-4
    lora_keys = set(chain["lora_metrics"].metadata)
    baseline_keys = set(chain["baseline_metrics"].metadata)
    assert "lora_best_val_macro_f1" in lora_keys and "baseline_best_val_macro_f1" in baseline_keys
    assert not lora_keys & baseline_keys
    curves = json.loads(Path(chain["lora_metrics"].path).read_text())
    assert [row["epoch"] for row in curves["history"]] == [1]
    assert curves["history"][0]["val_macro_f1"] == pytest.approx(
        chain["lora_metrics"].metadata["lora_best_val_macro_f1"]
    )


@pytest.mark.parametrize(
    "step", ["prepare", "base_model", "tokenization", "train", "evaluate", "export_model", "smoke"]
)
def test_every_step_has_a_command_line(step):
    run = subprocess.run([sys.executable, "-m", f"components.{step}", "--help"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "--output-dir" in run.stdout and "--config" in run.stdout and "--set" in run.stdout


def test_evaluate_component_outputs(chain):
    metrics = chain["metrics"].metadata
    assert 0 <= metrics["lora_test_macro_f1"] <= 1 and 0 <= metrics["baseline_test_macro_f1"] <= 1
    confusion = chain["lora_confusion"].metadata["confusionMatrix"]
    assert [s["displayName"] for s in confusion["annotationSpecs"]] == ["negative", "positive", "neutral"]
    assert sum(sum(row["row"]) for row in confusion["rows"]) == 70
    assert "# LoRA vs full fine-tuning" in Path(chain["report"].path).read_text(encoding="utf-8")
    assert 0 <= metrics["reference_test_macro_f1"] <= 1 and "lora_vs_baseline_mcnemar_p" in metrics
    assert sum(sum(row["row"]) for row in chain["reference_confusion"].metadata["confusionMatrix"]["rows"]) == 70
    page = Path(chain["html_report"].path).read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 3
    assert "<td>cross split texts</td><td>0</td>" in page  # prepare's findings, from the report's metadata
    assert "<td>rows in</td><td>694</td>" in page


def test_trained_models_and_the_report_carry_lineage(chain):
    base, tokenized = chain["base"].metadata, chain["tokenized"].metadata
    for name, lr in (("lora", 2e-3), ("baseline", 3e-4)):
        meta = chain[name].metadata
        assert meta["hyperparameters"]["epochs"] == 1 and meta["hyperparameters"][f"{name}_learning_rate"] == lr
        assert meta["base_model_sha256"] == base["content_sha256"] and meta["base_model"] == "tiny"
        assert (meta["max_length"], meta["buckets"]) == (tokenized["max_length"], tokenized["buckets"])
        assert meta["source_sha256"] == chain["train"].metadata["source_sha256"] and meta["split_seed"] == 42
        assert meta["tokenizer_sha256"] == tokenized["tokenizer_sha256"] and "libraries" in meta
    assert "git_commit" not in chain[f"{name}_metrics"].metadata  # Metrics metadata is only metrics
    report = chain["report"].metadata
    assert report["lora_test_macro_f1"] == chain["metrics"].metadata["lora_test_macro_f1"]
    assert report["base_model_sha256"] == base["content_sha256"] and report["source_uri"] == "sample"


def test_export_component_serves_the_better_model_with_its_card(chain, tmp_path):
    from banglasenti.models.modeling import MERGED, MODEL_CARD, SERVING_INFO
    from components.export_model import export_model

    out = artifact(dsl.Model, tmp_path / "export")
    export_model.python_func(
        config_json=chain["config_json"],
        base_model=chain["base"],
        lora_model=chain["lora"],
        baseline_model=chain["baseline"],
        metrics=chain["metrics"],
        data_report=chain["data_report"],
        test=chain["test"],
        model=out,
    )
    meta = out.metadata
    scores = {name: chain[name].metadata["best_val_macro_f1"] for name in ("lora", "baseline")}
    assert meta["selected"] == ("baseline" if scores["baseline"] > scores["lora"] else "lora")
    assert (meta["lora_val_macro_f1"], meta["baseline_val_macro_f1"]) == (scores["lora"], scores["baseline"])
    assert meta["test_macro_f1"] == chain["metrics"].metadata[f"{meta['selected']}_test_macro_f1"]
    assert meta["demo"] is True and meta["source_uri"] == "sample" and meta["base_model"] == "tiny"
    assert meta["lora_model_uri"] == chain["lora"].uri and meta["baseline_model_uri"] == chain["baseline"].uri
    info = json.loads((Path(out.path) / MERGED / SERVING_INFO).read_text(encoding="utf-8"))
    assert info["selected"] == meta["selected"] and info["trained_on"]["source_uri"] == "sample"
    card = (Path(out.path) / MODEL_CARD).read_text(encoding="utf-8")
    assert "Data-quality report of the prepare step" in card and "TF-IDF + logistic regression" in card
    assert f"Served (`merged/`): **{meta['selected']}**" in card
    texts = len(pd.read_parquet(chain["test"].path))
    assert meta["runtime"].startswith("onnxruntime") and info["runtime"]["texts"] == texts  # checked on the test split
    assert "Runtime: ONNX Runtime" in card
    served = f"Exported and served: **{meta['selected']}** ({meta['selection_reason']})."
    assert served in Path(chain["report"].path).read_text(encoding="utf-8")  # evaluate's report says it too
    assert f"Exported and served: <strong>{meta['selected']}</strong>" in Path(chain["html_report"].path).read_text(
        encoding="utf-8"
    )
