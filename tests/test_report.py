"""Bootstrap intervals, paired tests, the TF-IDF reference and the HTML report."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score

from banglasenti.config.schema import ReferenceConfig
from banglasenti.evaluation.comparison import run_evaluate
from banglasenti.evaluation.metrics import flat_metrics
from banglasenti.evaluation.reference import predict_reference, train_reference
from banglasenti.evaluation.stats import (
    bootstrap_indices,
    compare,
    confidence_intervals,
    mcnemar,
    paired_bootstrap,
    resampled_scores,
)

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("n, classes", [(50, 3), (200, 3), (40, 2), (30, 1)])
def test_vectorised_scores_match_sklearn(n, classes):
    y_true = RNG.integers(0, 3, n)
    y_pred = RNG.integers(0, classes, n)
    idx = bootstrap_indices(n, 25, seed=1)
    scores = resampled_scores(y_true, y_pred, idx)
    for row in range(len(idx)):
        t, p = y_true[idx[row]], y_pred[idx[row]]
        assert scores["accuracy"][row] == pytest.approx(accuracy_score(t, p))
        for avg in ("macro", "weighted"):
            expected = f1_score(t, p, labels=[0, 1, 2], average=avg, zero_division=0)
            assert scores[f"{avg}_f1"][row] == pytest.approx(expected)


def test_interval_holds_the_observed_score_and_narrows_with_more_data():
    def width(n):
        y_true = RNG.integers(0, 3, n)
        y_pred = np.where(RNG.random(n) < 0.7, y_true, RNG.integers(0, 3, n))
        ci = confidence_intervals(y_true, y_pred, bootstrap_indices(n, 500, 0), 0.95)["macro_f1"]
        observed = f1_score(y_true, y_pred, average="macro")
        assert ci[0] <= observed <= ci[1]
        return ci[1] - ci[0]

    assert width(2000) < width(100) / 2


def test_paired_tests_tell_a_real_difference_from_none():
    y_true = RNG.integers(0, 3, 300)
    good = np.where(RNG.random(300) < 0.9, y_true, (y_true + 1) % 3)
    bad = np.where(RNG.random(300) < 0.5, y_true, (y_true + 1) % 3)
    idx = bootstrap_indices(300, 1000, 0)
    real = paired_bootstrap(y_true, good, bad, idx, 0.95)
    assert real["macro_f1_delta"] > 0.2 and real["delta_low"] > 0 and real["p_value"] < 0.01
    same = paired_bootstrap(y_true, good, good, idx, 0.95)
    assert same["macro_f1_delta"] == 0 and same["p_value"] == 1.0
    assert mcnemar(y_true, good, bad)["p_value"] < 1e-6
    assert mcnemar(y_true, good, good) == {"a_only_correct": 0, "b_only_correct": 0, "p_value": 1.0}


def test_mcnemar_by_hand():
    y_true = np.zeros(12, dtype=int)
    a = np.zeros(12, dtype=int)  # all right
    b = np.array([1] * 10 + [0] * 2)  # 10 wrong, and a is right on all of them
    result = mcnemar(y_true, a, b)
    assert result["a_only_correct"] == 10 and result["b_only_correct"] == 0
    assert result["p_value"] == pytest.approx(2 * 0.5**10)


def test_compare_pairs_only_known_models():
    y = np.array([0, 1, 2, 0, 1, 2])
    out = compare(y, {"lora": y, "baseline": y[::-1]}, [("lora", "baseline"), ("lora", "reference")], 50, 0.9, 0)
    assert set(out["intervals"]) == {"lora", "baseline"} and len(out["paired_tests"]) == 1
    assert out["intervals"]["lora"]["accuracy"] == [1.0, 1.0]


def test_tfidf_reference_learns_the_sample(prepared_dir):
    frames = {s: pd.read_parquet(prepared_dir / f"{s}.parquet") for s in ("train", "val", "test")}
    model, summary = train_reference(frames["train"], frames["val"], ReferenceConfig())
    test_pred = predict_reference(model, frames["test"]["text"])
    macro = f1_score(frames["test"]["label"], test_pred, average="macro")
    majority = f1_score(
        frames["test"]["label"], np.full(len(test_pred), frames["train"]["label"].mode()[0]), average="macro"
    )
    assert macro > majority + 0.15
    assert summary["best_c"] in ReferenceConfig().c_values and len(summary["c_search"]) == 4
    assert summary["best_val_macro_f1"] == max(r["val_macro_f1"] for r in summary["c_search"])
    assert summary["trainable_parameters"] == 3 * summary["features"] + 3


def test_run_evaluate_writes_the_html_report(trained, base_dir, tokenized_dir, prepared_dir, fast_cfg, tmp_path):
    dirs = {mode: str(path) for mode, (path, _) in trained.items()}
    splits = {s: str(prepared_dir / f"{s}.parquet") for s in ("train", "val", "test")}
    results = run_evaluate(
        fast_cfg,
        dirs,
        str(base_dir),
        str(tokenized_dir),
        str(tmp_path / "r.md"),
        splits,
        str(tmp_path / "r.html"),
        str(prepared_dir / "report.md"),
        {"cross_split_texts": 0},
    )
    assert set(results["models"]) == {"lora", "baseline", "reference"}
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3  # confusion matrices, per-class F1, training curves
    for name in ("lora", "baseline", "reference"):
        m = results["models"][name]
        low, high = results["uncertainty"]["intervals"][name]["macro_f1"]
        assert f"{m['macro_f1']:.4f}" in page and f"[{low:.3f}, {high:.3f}]" in page
    lora_vs_base = results["uncertainty"]["paired_tests"][0]
    assert (lora_vs_base["a"], lora_vs_base["b"]) == ("lora", "baseline")
    assert f"{lora_vs_base['mcnemar_p_value']:.3f}" in page
    assert "Data-quality report" in page and "<td>cross split texts</td>" in page
    lora_size = sum(p.stat().st_size for p in trained["lora"][0].glob("*.safetensors"))
    assert f"{lora_size / 2**20:.2f} MiB" in page
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "| reference |" in markdown and "McNemar p" in markdown
    flat = flat_metrics(results)
    assert flat["reference_test_macro_f1"] == results["models"]["reference"]["macro_f1"]
    assert flat["lora_test_macro_f1_ci_low"] <= flat["lora_test_macro_f1"] <= flat["lora_test_macro_f1_ci_high"]
    json.dumps(results)  # metrics.json of the command line


def test_report_warns_when_a_transformer_falls_below_the_reference():
    from banglasenti.evaluation.metrics import classification_metrics, majority_class_metrics
    from banglasenti.evaluation.report import render_html

    y = [0, 1, 2, 2, 1, 0]
    models = {
        "lora": classification_metrics(y, [2] * 6) | {"beats_majority_class": False},
        "reference": classification_metrics(y, y) | {"beats_majority_class": True},
    }
    page = render_html({"models": models, "majority_class": majority_class_metrics([2], y)}, {}, {})
    assert "lora collapsed" in page and "lora scores below the TF-IDF reference" in page
    assert "WARNING:</strong> reference" not in page


def test_evaluate_command_writes_html_and_the_reference(
    trained, base_dir, tokenized_dir, prepared_dir, tmp_path, capsys
):
    """The command's function in this process (its `python -m` entry point: test_components)."""
    from components.evaluate import main

    status = main(
        [
            "--base-model",
            str(base_dir),
            "--tokenized",
            str(tokenized_dir),
            "--lora",
            str(trained["lora"][0]),
            "--baseline",
            str(trained["baseline"][0]),
            "--splits",
            str(prepared_dir),
            "--set",
            "report.bootstrap_samples=100",
            "--output-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr()
    assert status == 0, out.err
    saved = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert saved["uncertainty"]["samples"] == 100 and "reference" in saved["models"]
    assert "reference_test_macro_f1" in json.loads(out.out.strip().splitlines()[-1])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "# Data-quality report" in page and "<td>reference</td>" in page
