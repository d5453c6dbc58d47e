"""How sure the test scores are: bootstrap confidence intervals, and paired tests between two models.

Every model is resampled with the same bootstrap indices, so differences between models are paired.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from banglasenti.config.schema import NUM_CLASSES


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """`samples` rows of `n` indices drawn with replacement (one row per bootstrap resample)."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def resampled_scores(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and weighted F1 of every resample (vectorised; F1 of an absent class is 0, as
    sklearn's zero_division=0 with all three labels)."""
    t, p = np.asarray(y_true)[idx], np.asarray(y_pred)[idx]
    n = idx.shape[1]
    f1 = np.zeros((idx.shape[0], NUM_CLASSES))
    support = np.zeros_like(f1)
    for c in range(NUM_CLASSES):
        is_t, is_p = t == c, p == c
        tp = (is_t & is_p).sum(axis=1)
        denom = is_t.sum(axis=1) + is_p.sum(axis=1)
        f1[:, c] = np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
        support[:, c] = is_t.sum(axis=1)
    return {
        "accuracy": (t == p).mean(axis=1),
        "macro_f1": f1.mean(axis=1),
        "weighted_f1": (f1 * support).sum(axis=1) / n,
    }


def confidence_intervals(y_true, y_pred, idx: np.ndarray, level: float) -> dict[str, list[float]]:
    """Percentile bootstrap interval [low, high] of each headline metric."""
    tail = 100 * (1 - level) / 2
    return {
        key: [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
        for key, values in resampled_scores(y_true, y_pred, idx).items()
    }


def paired_bootstrap(y_true, pred_a, pred_b, idx: np.ndarray, level: float) -> dict[str, float]:
    """Macro-F1 of a minus b: observed, its bootstrap interval, and a two-sided bootstrap p-value (twice the
    share of resamples on the smaller side of zero)."""
    full = np.arange(len(y_true))[None, :]
    observed = float(
        resampled_scores(y_true, pred_a, full)["macro_f1"][0] - resampled_scores(y_true, pred_b, full)["macro_f1"][0]
    )
    delta = resampled_scores(y_true, pred_a, idx)["macro_f1"] - resampled_scores(y_true, pred_b, idx)["macro_f1"]
    tail = 100 * (1 - level) / 2
    p_value = min(1.0, 2 * min(float((delta <= 0).mean()), float((delta >= 0).mean())))
    return {
        "macro_f1_delta": observed,
        "delta_low": float(np.percentile(delta, tail)),
        "delta_high": float(np.percentile(delta, 100 - tail)),
        "p_value": p_value,
    }


def mcnemar(y_true, pred_a, pred_b) -> dict[str, float]:
    """Exact McNemar test on correctness: examples only a gets right against those only b gets right."""
    from scipy.stats import binomtest

    right_a = np.asarray(pred_a) == np.asarray(y_true)
    right_b = np.asarray(pred_b) == np.asarray(y_true)
    a_only, b_only = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    p_value = 1.0 if a_only + b_only == 0 else float(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    return {"a_only_correct": a_only, "b_only_correct": b_only, "p_value": p_value}


def compare(
    y_true, preds: dict[str, np.ndarray], pairs: list[tuple[str, str]], samples: int, level: float, seed: int
) -> dict[str, Any]:
    """Intervals for every model and paired tests for `pairs`, all on one set of bootstrap resamples."""
    idx = bootstrap_indices(len(y_true), samples, seed)
    intervals = {name: confidence_intervals(y_true, pred, idx, level) for name, pred in preds.items()}
    tests = [
        {
            "a": a,
            "b": b,
            **{f"bootstrap_{k}": v for k, v in paired_bootstrap(y_true, preds[a], preds[b], idx, level).items()},
            **{f"mcnemar_{k}": v for k, v in mcnemar(y_true, preds[a], preds[b]).items()},
        }
        for a, b in pairs
        if a in preds and b in preds
    ]
    return {"samples": samples, "level": level, "seed": seed, "intervals": intervals, "paired_tests": tests}
