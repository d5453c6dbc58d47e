"""Export (merge_and_unload + adapter) and the predict command."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from banglasenti.models.modeling import ADAPTER, MERGED
from banglasenti.serving.export import write_export
from banglasenti.serving.predict import PROBABILITY_COLUMNS, load_model, predict_texts, write_predictions


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained, base_dir):
    out = tmp_path_factory.mktemp("export") / "lora"
    return out, write_export(base_dir, trained["lora"][0], None, out, "lora")  # LoRA alone


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


def test_predict_matches_evaluation_of_the_adapter(exported, trained, base_dir, tokenized_dir, prepared_dir, fast_cfg):
    from banglasenti.data.collation import load_tokenized_split
    from banglasenti.models.inference import predict_logits
    from banglasenti.models.modeling import load_trained_model

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
    from banglasenti.data.tables import read_table

    frame = pd.DataFrame(
        {
            "text": ["ভালো", "খারাপ"],
            "label": ["positive", "negative"],
            "label_id": [1, 0],
            "p_negative": [0.1, 0.8],
            "p_positive": [0.7, 0.1],
            "p_neutral": [0.2, 0.1],
        }
    )
    write_predictions(frame, tmp_path / f"p{suffix}")
    back = read_table(tmp_path / f"p{suffix}")
    assert back["text"].tolist() == ["ভালো", "খারাপ"] and back["label"].tolist() == ["positive", "negative"]
    assert [float(v) for v in back["p_positive"]] == [0.7, 0.1]


@pytest.fixture
def run_predict(capsys):
    """The predict command with these arguments, in this process: (exit status, stdout, stderr). Its `python -m`
    entry point runs in a subprocess in the Cloud Storage test below and in test_serve."""
    from banglasenti.serving.predict import main

    def run(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, out.out, out.err)

    return run


def test_predict_command_reads_a_table_with_another_text_column(exported, tmp_path, run_predict):
    table = tmp_path / "reviews.tsv"
    pd.DataFrame({"id": [1, 2, 3], "review": ["খুব ভালো", "বাজে", "ঠিক আছে"]}).to_csv(table, sep="\t", index=False)
    out = tmp_path / "pred.jsonl"
    run = run_predict(
        "--model",
        exported[0] / MERGED,
        "--input",
        table,
        "--set",
        "data.text_column=review",
        "--set",
        "train.eval_batch_size=2",
        "--output",
        out,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == ["খুব ভালো", "বাজে", "ঠিক আছে"]
    assert all(abs(sum(r[c] for c in PROBABILITY_COLUMNS) - 1) < 1e-6 for r in rows)
    missing = run_predict("--model", exported[0] / MERGED, "--input", table)
    assert missing.returncode == 2 and "missing column 'text'" in missing.stderr


def test_predict_command_prints_texts_and_needs_a_base_for_an_adapter(exported, base_dir, trained, run_predict):
    run = run_predict("--model", trained["lora"][0], "--base-model", base_dir, "--text", "খুব ভালো", "--text", "বাজে")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["খুব ভালো", "বাজে"] and {r["label_id"] for r in rows} <= {0, 1, 2}
    no_base = run_predict("--model", trained["lora"][0], "--text", "খুব ভালো")
    assert no_base.returncode == 2 and "--base-model" in no_base.stderr


# --- the served model: chosen by validation macro-F1, with its card ----------------------------------------


@pytest.mark.parametrize(
    ("select", "scores", "chosen"),
    [
        ("best", {"lora": 0.41, "baseline": 0.69}, "baseline"),
        ("best", {"lora": 0.70, "baseline": 0.69}, "lora"),
        ("best", {"lora": 0.5, "baseline": 0.5}, "lora"),  # a tie: the smaller adapter
        ("lora", {"lora": 0.41, "baseline": 0.69}, "lora"),
        ("baseline", {"lora": 0.70, "baseline": 0.69}, "baseline"),
        ("best", {"lora": 0.41}, "lora"),
    ],
)
def test_choose_model_by_validation_macro_f1(select, scores, chosen):
    from banglasenti.models.modeling import choose_model

    selected, reason = choose_model(select, scores)
    assert selected == chosen
    assert all(f"{name} {score:.4f}" in reason for name, score in scores.items())


def test_choose_model_refuses_an_unknown_choice():
    from banglasenti.models.modeling import choose_model

    with pytest.raises(ValueError, match="export.select"):
        choose_model("worst", {"lora": 0.1, "baseline": 0.2})


def logits_on(model_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), use_safetensors=True).eval()
    batch = AutoTokenizer.from_pretrained(str(model_dir))(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.numpy()


@pytest.fixture(scope="module")
def eval_metrics(trained, base_dir, tokenized_dir, prepared_dir, fast_cfg, tmp_path_factory):
    from banglasenti.evaluation.comparison import run_evaluate
    from banglasenti.evaluation.metrics import flat_metrics

    out = tmp_path_factory.mktemp("eval")
    splits = {name: str(prepared_dir / f"{name}.parquet") for name in ("train", "val", "test")}
    dirs = {name: str(path) for name, (path, _) in trained.items()}
    return flat_metrics(run_evaluate(fast_cfg, dirs, str(base_dir), str(tokenized_dir), str(out / "report.md"), splits))


@pytest.mark.parametrize("select", ["baseline", "best"])
def test_export_serves_the_selected_model_and_keeps_both(
    select, trained, base_dir, fast_cfg, prepared_dir, eval_metrics, tmp_path
):
    from banglasenti.models.modeling import BASELINE, MODEL_CARD, SERVING_INFO
    from banglasenti.serving.export import write_export
    from banglasenti.storage.artifacts import require_committed

    out = tmp_path / "export"
    card = {
        "config": fast_cfg,
        "trained_on": {"source_uri": "sample", "base_model": "tiny"},
        "metrics": eval_metrics,
        "data_report": (prepared_dir / "report.md").read_text(encoding="utf-8"),
    }
    summary = write_export(base_dir, trained["lora"][0], trained["baseline"][0], out, select, card)
    scores = {name: s["best_val_macro_f1"] for name, (_, s) in trained.items()}
    expected = "baseline" if select == "baseline" or scores["baseline"] > scores["lora"] else "lora"
    assert summary["selected"] == expected
    assert summary["lora_val_macro_f1"] == scores["lora"] and summary["baseline_val_macro_f1"] == scores["baseline"]
    assert f"{scores['lora']:.4f}" in summary["selection_reason"]
    assert summary["test_macro_f1"] == eval_metrics[f"{expected}_test_macro_f1"]
    assert summary["demo"] is True and "demo sample" in summary["warning"]
    # both models kept: the served one in merged/, LoRA's adapter always, the baseline's weights when not served
    assert (out / ADAPTER / "adapter_model.safetensors").exists()
    assert (out / BASELINE / "model.safetensors").exists() == (expected == "lora")
    served = logits_on(out / MERGED, CHECK)
    if expected == "baseline":
        np.testing.assert_allclose(served, logits_on(trained["baseline"][0], CHECK), atol=1e-6)
    else:
        np.testing.assert_allclose(
            logits_on(out / BASELINE, CHECK), logits_on(trained["baseline"][0], CHECK), atol=1e-6
        )
        assert not np.allclose(served, logits_on(out / BASELINE, CHECK), atol=1e-4)
    info = json.loads((out / MERGED / SERVING_INFO).read_text(encoding="utf-8"))
    assert info["selected"] == expected and info["tokenize"] == fast_cfg.tokenize.model_dump()
    assert (out / MERGED / MODEL_CARD).read_text(encoding="utf-8") == (out / MODEL_CARD).read_text(encoding="utf-8")
    require_committed(out / MERGED)  # merged/ commits itself: a copy of it alone can be checked
    (out / MERGED / SERVING_INFO).write_text("{}", encoding="utf-8")
    with pytest.raises(Exception, match="uncommitted directory artifact"):
        require_committed(out / MERGED)


CHECK = ["খুব ভালো লাগলো", "একদম বাজে", "আজ বৃহস্পতিবার"]


def card_front_matter(text: str) -> dict:
    import yaml

    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_model_card_of_a_demo_export(trained, base_dir, fast_cfg, prepared_dir, eval_metrics, tmp_path):
    from banglasenti.models.modeling import MODEL_CARD
    from banglasenti.serving.export import write_export

    out = tmp_path / "export"
    card = {
        "config": fast_cfg,
        "trained_on": {"source_uri": "sample", "base_model": "tiny"},
        "metrics": eval_metrics,
        "data_report": (prepared_dir / "report.md").read_text(encoding="utf-8"),
    }
    summary = write_export(base_dir, trained["lora"][0], trained["baseline"][0], out, "best", card)
    text = (out / MODEL_CARD).read_text(encoding="utf-8")
    meta = card_front_matter(text)
    assert (
        meta["language"] == ["bn"] and meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "text-classification"
    )
    assert "demo" in meta["tags"] and "base_model" not in meta  # the tiny base is no Hub model
    selected = summary["selected"]
    result = meta["model-index"][0]["results"][0]["metrics"][0]
    assert result["value"] == round(eval_metrics[f"{selected}_test_macro_f1"], 4)
    assert "> **DEMO MODEL" in text and "embedded 694-row demo sample" in text
    assert f"Served (`merged/`): **{selected}**" in text and summary["selection_reason"] in text
    for name in ("lora", "baseline", "reference"):
        low, high = eval_metrics[f"{name}_test_macro_f1_ci_low"], eval_metrics[f"{name}_test_macro_f1_ci_high"]
        assert f"| {eval_metrics[f'{name}_test_macro_f1']:.4f} | [{low:.3f}, {high:.3f}] |" in text
    assert "TF-IDF + logistic regression (reference)" in text and "**(served)**" in text
    assert "| embedded sample | banglasenti/data/bangla_sentiment_sample.csv | Apache-2.0 |" in text
    assert "de-duplicated before splitting" in text and "### Rows" in text  # prepare's report, demoted
    assert "romanised Bengali" in text and "Label noise of the sources: one author's labels" in text
    assert "Domains: trained on products, food" in text and "95 % bootstrap intervals" in text
    assert (
        f"learning rate | {trained['lora'][1]['learning_rate']} | {trained['baseline'][1]['learning_rate']} |" in text
    )


def test_model_card_of_the_banglasenti_data_states_its_sources_and_licences():
    from banglasenti.config.schema import CONFIG_DIR, load_config
    from banglasenti.serving.model_card import BANGLASENTI_URI, render_model_card

    cfg = load_config(CONFIG_DIR / "banglasenti.yaml")
    facts = {
        "config": cfg,
        "trained_on": {
            "source_uri": BANGLASENTI_URI,
            "base_model": "FacebookAI/xlm-roberta-base",
            "source_sha256": "ab" * 32,
        },
        "selection": {
            "selected": "baseline",
            "selection_reason": "higher validation macro-F1",
            "val_macro_f1": {"lora": 0.6, "baseline": 0.7},
            "demo": False,
        },
        "metrics": {"baseline_test_macro_f1": 0.69, "baseline_test_accuracy": 0.7, "reference_test_macro_f1": 0.72},
        "summaries": {},
    }
    text = render_model_card(facts)
    meta = card_front_matter(text)
    assert meta["license"] == "cc-by-nc-sa-4.0" and meta["base_model"] == "FacebookAI/xlm-roberta-base"
    assert "sustcsenlp/bn_sentiment_noisy_dataset" in meta["datasets"] and "demo" not in meta["tags"]
    assert "| BanglaBook reviews | github.com/mohsinulkabir14/BanglaBook | CC BY-NC-SA 4.0 |" in text
    assert "DEMO" not in text and "below the TF-IDF reference (0.6900 < 0.7200)" in text
    assert "SentNoB part whose negative and neutral labels look swapped" in text
    other = render_model_card(
        {
            **facts,
            "config": cfg.model_copy(update={"export": cfg.export.model_copy(update={"license": "mit"})}),
            "trained_on": {"source_uri": "gs://b/mine.csv"},
        }
    )
    assert card_front_matter(other)["license"] == "mit" and "not known to the pipeline" in other


# --- predict on JSONL instances (Vertex AI batch prediction's input format) --------------------------------


def test_predict_command_on_jsonl_instances_keeps_order_and_names_bad_lines(exported, tmp_path, run_predict):
    texts = ["খুব ভালো", "বাজে", "ঠিক আছে", "দাম বেশি"]
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    run = run_predict("--model", exported[0], "--input", source, "--output", out, "--output-format", "vertex")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["instance"]["text"] for r in rows] == texts
    assert all(set(r["prediction"]) >= {"label", "label_id", "scores"} for r in rows)
    flat = run_predict("--model", exported[0], "--input", source)
    assert [json.loads(line)["label"] for line in flat.stdout.splitlines()] == [r["prediction"]["label"] for r in rows]
    source.write_text('{"text": "ভালো"}\n{"text": 3}\n', encoding="utf-8")
    bad = run_predict("--model", exported[0], "--input", source)
    assert bad.returncode == 2 and f"{source}: line 2: 'text' must be a string, got int" in bad.stderr
    wrong = run_predict(
        "--model", exported[0], "--text", "x", "--output", tmp_path / "o.csv", "--output-format", "vertex"
    )
    assert wrong.returncode == 2 and "writes JSONL" in wrong.stderr


def test_predict_command_reads_and_writes_cloud_storage(exported, gcs_emulator, tmp_path):
    from banglasenti.storage.artifacts import gcs_client

    bucket = gcs_client().create_bucket("batch-in")
    texts = ["খুব ভালো", "বাজে"]
    bucket.blob("texts.jsonl").upload_from_string("".join(json.dumps({"text": t}) + "\n" for t in texts))
    env = {**os.environ, "STORAGE_EMULATOR_HOST": gcs_emulator}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "banglasenti.serving.predict",
            "--model",
            str(exported[0]),
            "--input",
            "gs://batch-in/texts.jsonl",
            "--output",
            "gs://batch-in/out/predictions.jsonl",
            "--output-format",
            "vertex",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    lines = bucket.blob("out/predictions.jsonl").download_as_text().splitlines()
    assert [json.loads(line)["instance"]["text"] for line in lines] == texts
