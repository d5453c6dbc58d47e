"""Classification metrics shared by training (val) and evaluation (test); macro-F1 is the headline."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from banglasenti.config.schema import CLASS_NAMES, NUM_CLASSES

LABELS = list(range(NUM_CLASSES))
HEADLINE = ("accuracy", "macro_f1", "weighted_f1")  # the scores every report leads with


def headline_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy, macro-F1 and weighted F1 (zero_division=0: a class never predicted scores 0)."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="weighted", zero_division=0)),
    }


def classification_metrics(y_true, y_pred) -> dict[str, Any]:
    """Headline metrics, per-class precision/recall/F1, confusion matrix and collapse detection."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    predicted = Counter(y_pred.tolist())
    return {
        **headline_metrics(y_true, y_pred),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(CLASS_NAMES)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
        "predicted_classes": len(predicted),
        "collapsed": len(predicted) <= 1,
        "examples": int(len(y_true)),
    }


def majority_class_metrics(train_labels, y_true) -> dict[str, float]:
    """What always predicting the most frequent train label scores on `y_true`."""
    majority = Counter(np.asarray(train_labels).tolist()).most_common(1)[0][0]
    return headline_metrics(y_true, np.full(len(y_true), majority))


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics with distinct keys per model (Vertex Experiments merges all Metrics into one row)."""
    flat: dict[str, float] = {}
    for name, m in results["models"].items():
        for key in HEADLINE:
            flat[f"{name}_test_{key}"] = m[key]
        for cls, p in m["per_class"].items():
            flat[f"{name}_test_f1_{cls}"] = p["f1"]
        flat[f"{name}_collapsed"] = float(m["collapsed"])
    flat["majority_class_test_macro_f1"] = results["majority_class"]["macro_f1"]
    for test in results.get("uncertainty", {}).get("paired_tests", []):
        pair = f"{test['a']}_vs_{test['b']}"
        flat[f"{pair}_macro_f1_delta"] = test["bootstrap_macro_f1_delta"]
        flat[f"{pair}_bootstrap_p"] = test["bootstrap_p_value"]
        flat[f"{pair}_mcnemar_p"] = test["mcnemar_p_value"]
    for name, ci in results.get("uncertainty", {}).get("intervals", {}).items():
        flat[f"{name}_test_macro_f1_ci_low"], flat[f"{name}_test_macro_f1_ci_high"] = ci["macro_f1"]
    return flat
