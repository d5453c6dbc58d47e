"""Export (merge_and_unload + adapter) and the predict command."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from components.export import ADAPTER, MERGED, export_lora
from components.predict import PROBABILITY_COLUMNS, load_model, predict_texts, write_predictions


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained, base_dir):
    out = tmp_path_factory.mktemp("export") / "lora"
    return out, export_lora(base_dir, trained["lora"][0], out)


def test_export_writes_a_merged_model_and_the_adapter(exported, trained):
    from transformers import AutoModelForSequenceClassification

    out, summary = exported
    assert (out / ADAPTER / "adapter_config.json").exists() and (out / ADAPTER / "tokenizer.json").exists()
    assert not (out / MERGED / "adapter_config.json").exists()
    merged = AutoModelForSequenceClassification.from_pretrained(str(out / MERGED))  # plain transformers, no PEFT
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert merged.config.id2label == {0: "negative", 1: "positive", 2: "neutral"}
    assert summary["max_logit_difference"] < 1e-4
    assert summary["adapter_bytes"] < summary["merged_bytes"]
    assert json.loads((out / "export.json").read_text())["merged_dir"] == MERGED


def test_predict_matches_evaluation_of_the_adapter(exported, trained, base_dir, tokenized_dir, prepared_dir,
                                                   fast_cfg):
    from components.evaluate import load_trained_model, predict_logits
    from components.train import load_tokenized_split

    test = load_tokenized_split(tokenized_dir, "test")
    adapter = load_trained_model(trained["lora"][0], base_dir)
    expected = torch.softmax(torch.from_numpy(predict_logits(adapter, test, 64, 1)), dim=-1).numpy()
    texts = pd.read_parquet(prepared_dir / "test.parquet")["text"].tolist()
    model, tokenizer = load_model(exported[0], None)  # the export directory: its merged/ model
    small_batches = fast_cfg.model_copy(update={"train": fast_cfg.train.model_copy(update={"eval_batch_size": 8})})
    out = predict_texts(texts, model, tokenizer, small_batches)
    assert out["text"].tolist() == texts
    np.testing.assert_allclose(out[PROBABILITY_COLUMNS].to_numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out[PROBABILITY_COLUMNS].sum(axis=1), 1.0, atol=1e-6)
    assert (out["label_id"].to_numpy() == expected.argmax(axis=1)).all()
    assert set(out["label"]) <= {"negative", "positive", "neutral"}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_write_predictions_round_trips(tmp_path, suffix):
    from components.prepare import read_table

    frame = pd.DataFrame({"text": ["ভালো", "খারাপ"], "label": ["positive", "negative"], "label_id": [1, 0],
                          "p_negative": [0.1, 0.8], "p_positive": [0.7, 0.1], "p_neutral": [0.2, 0.1]})
    write_predictions(frame, tmp_path / f"p{suffix}")
    back = read_table(tmp_path / f"p{suffix}")
    assert back["text"].tolist() == ["ভালো", "খারাপ"] and back["label"].tolist() == ["positive", "negative"]
    assert [float(v) for v in back["p_positive"]] == [0.7, 0.1]


def run_predict(*args):
    return subprocess.run([sys.executable, "-m", "components.predict", *map(str, args)], capture_output=True,
                          text=True)


def test_predict_command_reads_a_table_with_another_text_column(exported, tmp_path):
    table = tmp_path / "reviews.tsv"
    pd.DataFrame({"id": [1, 2, 3], "review": ["খুব ভালো", "বাজে", "ঠিক আছে"]}).to_csv(table, sep="\t", index=False)
    out = tmp_path / "pred.jsonl"
    run = run_predict("--model", exported[0] / MERGED, "--input", table, "--set", "data.text_column=review",
                      "--set", "train.eval_batch_size=2", "--output", out)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["খুব ভালো", "বাজে", "ঠিক আছে"]
    assert all(abs(sum(r[c] for c in PROBABILITY_COLUMNS) - 1) < 1e-6 for r in rows)
    missing = run_predict("--model", exported[0] / MERGED, "--input", table)
    assert missing.returncode == 2 and "missing column 'text'" in missing.stderr


def test_predict_command_prints_texts_and_needs_a_base_for_an_adapter(exported, base_dir, trained):
    run = run_predict("--model", trained["lora"][0], "--base-model", base_dir, "--text", "খুব ভালো", "--text", "বাজে")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["খুব ভালো", "বাজে"] and {r["label_id"] for r in rows} <= {0, 1, 2}
    no_base = run_predict("--model", trained["lora"][0], "--text", "খুব ভালো")
    assert no_base.returncode == 2 and "--base-model" in no_base.stderr
