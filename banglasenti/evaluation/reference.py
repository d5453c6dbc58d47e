"""The classical reference: character n-gram TF-IDF + logistic regression on the same split.

A transformer that scores below this reference (or collapses to one class) is visible at once in the report.
The regularisation strength C is chosen by val macro-F1; the test split is only predicted.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from banglasenti.config.schema import ReferenceConfig


def train_reference(train: pd.DataFrame, val: pd.DataFrame, cfg: ReferenceConfig):
    """Fit TF-IDF on the train texts, one logistic regression per C; keep the best by val macro-F1.

    Returns (fitted sklearn Pipeline, summary)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from banglasenti.evaluation.metrics import headline_metrics

    start = time.monotonic()
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(cfg.ngram_min, cfg.ngram_max), max_features=cfg.max_features, sublinear_tf=True
    )
    x_train = vectorizer.fit_transform(train["text"])
    x_val = vectorizer.transform(val["text"])
    history = []
    best: tuple[Any, dict[str, float], float] | None = None  # (classifier, val scores, C)
    for c in cfg.c_values:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=cfg.seed).fit(x_train, train["label"])
        scores = headline_metrics(val["label"], clf.predict(x_val))
        history.append({"c": c, **{f"val_{k}": v for k, v in scores.items()}})
        if best is None or scores["macro_f1"] > best[1]["macro_f1"]:
            best = (clf, scores, c)
    assert best is not None  # c_values has min_length=1
    clf, scores, c = best
    wall = time.monotonic() - start
    summary: dict[str, Any] = {
        "mode": "reference",
        "model": f"char {cfg.ngram_min}-{cfg.ngram_max}-gram TF-IDF + logistic regression",
        "best_c": c,
        "features": len(vectorizer.vocabulary_),
        "trainable_parameters": int(clf.coef_.size + clf.intercept_.size),
        "best_val_macro_f1": scores["macro_f1"],
        "best_val_accuracy": scores["accuracy"],
        "wall_seconds": round(wall, 2),
        "train_examples_per_second": round(len(train) * len(cfg.c_values) / max(wall, 1e-9), 2),
        "c_search": history,
    }
    return Pipeline([("tfidf", vectorizer), ("logreg", clf)]), summary


def predict_reference(model, texts: list[str] | pd.Series) -> np.ndarray:
    """Predicted class ids."""
    return np.asarray(model.predict(list(texts)))
