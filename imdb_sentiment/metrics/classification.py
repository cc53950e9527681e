"""Classification metrics computed offline with numpy and scikit-learn, and softmax."""

from __future__ import annotations

from typing import Any

import numpy as np

from imdb_sentiment.text import predicted_labels


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits ``(n, k)`` divided by ``temperature``, in float64."""
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


CHANCE_MARGIN = 0.02
"""A model must beat the majority-class rate by this much to count as having learned."""


def compute_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC-AUC, MCC, log loss and the confusion matrix.

    ``probs`` is ``(n, 2)`` or the positive-class probability ``(n,)``.
    """
    from sklearn import metrics as skm

    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    p1 = p[:, 1] if p.ndim == 2 else p
    pred = predicted_labels(p1)
    both_classes = len(np.unique(y)) == 2
    eps = 1e-7
    cm = skm.confusion_matrix(y, pred, labels=[0, 1])
    return {
        "n": len(y),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, p1)) if both_classes else float("nan"),
        "mcc": float(skm.matthews_corrcoef(y, pred)) if both_classes else 0.0,
        "log_loss": float(skm.log_loss(y, np.clip(p1, eps, 1 - eps), labels=[0, 1])),
        "majority_rate": float(max(np.mean(y), 1 - np.mean(y))) if len(y) else 0.0,
        "confusion_matrix": cm.tolist(),
    }


def at_chance(metrics: dict[str, Any], margin: float = CHANCE_MARGIN) -> bool:
    """True when accuracy does not beat always guessing the majority class."""
    return bool(metrics["accuracy"] <= metrics["majority_rate"] + margin)


def trainer_metrics(eval_pred: Any) -> dict[str, float]:
    """``compute_metrics`` for ``transformers.Trainer``: scalar metrics only."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    m = compute_metrics(labels, softmax(np.asarray(logits)))
    return {k: v for k, v in m.items() if isinstance(v, float) and k != "majority_rate"}


def predictions_frame(
    texts: list[str], labels: np.ndarray, probs: np.ndarray, extra: dict[str, Any] | None = None
) -> Any:
    """Per-review predictions as a DataFrame (text, label, predicted, probability, correct)."""
    import pandas as pd

    p1 = probs[:, 1]
    pred = predicted_labels(p1)
    frame = pd.DataFrame(
        {
            "text": texts,
            "label": np.asarray(labels).astype(int),
            "predicted": pred,
            "positive_probability": p1,
            "correct": pred == np.asarray(labels).astype(int),
        }
    )
    for key, values in (extra or {}).items():
        frame[key] = values
    return frame
