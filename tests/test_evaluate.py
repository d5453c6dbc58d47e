import numpy as np
import pytest

from banglasenti.evaluation.comparison import evaluate_models, render_comparison, run_evaluate
from banglasenti.evaluation.metrics import classification_metrics, flat_metrics, majority_class_metrics


def test_classification_metrics_by_hand():
    y_true = [0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 2, 0, 2]
    m = classification_metrics(y_true, y_pred)
    # class 0: P 1/2 R 1/2 F1 .5; class 1: P 2/3 R 1 F1 .8; class 2: P 1 R 3/4 F1 6/7
    assert m["per_class"]["negative"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["positive"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["neutral"]["f1"] == pytest.approx(6 / 7)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 6 / 7) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 4 * 6 / 7) / 8)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 3]]
    assert not m["collapsed"]


def test_collapse_and_majority_reference():
    y_true = np.array([0, 1, 2, 2, 2])
    m = classification_metrics(y_true, np.full(5, 2))
    assert m["collapsed"] and m["predicted_classes"] == 1
    majority = majority_class_metrics([2, 2, 0], y_true)
    assert majority["macro_f1"] == pytest.approx(m["macro_f1"]) == pytest.approx((2 * 0.6 / 1.6) / 3)


def test_report_flags_a_collapsed_model():
    collapsed = classification_metrics([0, 1, 2], [2, 2, 2]) | {"beats_majority_class": False}
    fine = classification_metrics([0, 1, 2], [0, 1, 2]) | {"beats_majority_class": True}
    results = {
        "models": {"lora": fine, "baseline": collapsed},
        "majority_class": majority_class_metrics([2], [0, 1, 2]),
    }
    report = render_comparison(results, {})
    assert "WARNING: baseline collapsed" in report and "WARNING: lora" not in report
    keys = flat_metrics(results)
    assert keys["baseline_collapsed"] == 1.0 and keys["lora_collapsed"] == 0.0
    assert {"lora_test_macro_f1", "baseline_test_macro_f1", "majority_class_test_macro_f1"} <= set(keys)


def test_evaluate_uses_the_trained_weights(trained, base_dir, tokenized_dir):
    dirs = {mode: path for mode, (path, _) in trained.items()}
    results = evaluate_models(dirs, base_dir, tokenized_dir, batch_size=32)
    for mode in ("lora", "baseline"):
        m = results["models"][mode]
        assert sum(map(sum, m["confusion_matrix"])) == m["examples"] == 70
    # The untrained base (fresh head) scores differently from the trained artifacts.
    untrained = evaluate_models({"fresh": base_dir}, base_dir, tokenized_dir, batch_size=32)["models"]["fresh"]
    assert untrained["confusion_matrix"] != results["models"]["baseline"]["confusion_matrix"]


def test_run_evaluate_writes_the_report(trained, base_dir, tokenized_dir, fast_cfg, tmp_path):
    dirs = {mode: str(path) for mode, (path, _) in trained.items()}
    results = run_evaluate(fast_cfg, dirs, str(base_dir), str(tokenized_dir), str(tmp_path / "r.md"))
    report = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "| lora |" in report and "| baseline |" in report and "majority class" in report
    assert f"{results['models']['lora']['macro_f1']:.4f}" in report
    assert "val macro-F1" in report  # training curves from training_summary.json
