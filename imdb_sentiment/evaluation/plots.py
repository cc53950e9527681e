"""The report's figures, one function each, written as PNG files.

Matplotlib is the ``plots`` extra: it is imported only when a figure is drawn, and without it
:func:`make_plots` raises :class:`MissingExtraError` (from :func:`imdb_sentiment.plotting.pyplot`)
so the report can go on without figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.metrics.calibration import (
    MIN_CONFIDENCE,
    expected_calibration_error,
    reliability_table,
)
from imdb_sentiment.plotting import pyplot, save_png
from imdb_sentiment.text import LABELS, predicted_labels

CHANCE = 1 / len(LABELS)
"""A classifier's floor: the accuracy of guessing."""


def confusion_matrix_figure(plt: Any, y: np.ndarray, p1: np.ndarray, title: str) -> Any:
    """Counts and row rates of true against predicted labels."""
    from sklearn.metrics import confusion_matrix

    fig, ax = plt.subplots(figsize=(4.6, 4))
    cm = confusion_matrix(y, predicted_labels(p1), labels=[0, 1])
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            # White text on the dark half of the colour map, black on the light half.
            ax.text(
                j,
                i,
                f"{cm[i, j]:,}\n{rates[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set_xticks([0, 1], list(LABELS))
    ax.set_yticks([0, 1], list(LABELS))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix\n{title}", fontsize=9)
    return fig


def reliability_figure(
    plt: Any, y: np.ndarray, p1: np.ndarray, uncalibrated: np.ndarray | None, title: str
) -> Any:
    """Accuracy against confidence per bin (above) and reviews per bin (below, log scale)."""
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot(
        [MIN_CONFIDENCE, 1], [MIN_CONFIDENCE, 1], "--", color="grey", label="perfectly calibrated"
    )
    series = [("calibrated", p1, "tab:blue")]
    if uncalibrated is not None:
        series.insert(0, ("uncalibrated (T=1)", np.asarray(uncalibrated), "tab:orange"))
    for k, (name, probs, colour) in enumerate(series):
        table = reliability_table(y, probs)
        keep = table.counts > 0
        ece = expected_calibration_error(y, probs)
        ax.plot(
            table.confidence[keep],
            table.accuracy[keep],
            "o-",
            color=colour,
            label=f"{name}: ECE {ece:.3f}",
        )
        width = (table.edges[1] - table.edges[0]) / len(series)
        axn.bar(table.edges[:-1] + width * (k + 0.5), table.counts, width=width * 0.9, color=colour)
    ax.set_ylabel("accuracy in bin")
    ax.set_ylim(min(0.4, float(np.nanmin(ax.get_ylim()))), 1.02)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Reliability diagram\n{title}", fontsize=9)
    axn.set_xlabel("confidence of the predicted label")
    axn.set_ylabel("reviews")
    axn.set_yscale("log")
    return fig


def roc_curve_figure(plt: Any, y: np.ndarray, p1: np.ndarray, title: str) -> Any:
    """The ROC curve with its AUC (only the chance line when one class is missing)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p1)
        ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {roc_auc_score(y, p1):.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"ROC curve\n{title}", fontsize=9)
    return fig


def accuracy_by_length_figure(
    plt: Any, by_length: list[dict[str, Any]], overall: float, title: str
) -> Any:
    """Accuracy per length bucket with Wilson intervals, against the overall accuracy."""
    fig, ax = plt.subplots(figsize=(6, 4))
    names = [r["slice"] for r in by_length]
    acc = np.array([r["accuracy"] for r in by_length])
    err = np.nan_to_num(
        [
            [r["accuracy"] - r["accuracy_low"] for r in by_length],
            [r["accuracy_high"] - r["accuracy"] for r in by_length],
        ]
    )
    bottom = CHANCE if all(r["accuracy_low"] >= CHANCE for r in by_length) else 0.0
    ax.bar(
        range(len(names)),
        acc - bottom,
        bottom=bottom,
        yerr=err,
        capsize=4,
        color="tab:blue",
        alpha=0.8,
    )
    for i, r in enumerate(by_length):
        ax.text(
            i, bottom + 0.01, f"n={r['n']:,}", ha="center", va="bottom", fontsize=8, color="white"
        )
    ax.axhline(overall, color="black", linestyle=":", label=f"overall {overall:.1%}")
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_xlabel("review length (tokens)")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_ylim(bottom, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Accuracy by review length\n{title}", fontsize=9)
    return fig


def make_plots(
    out_dir: Path,
    labels: np.ndarray,
    positive: np.ndarray,
    uncalibrated: np.ndarray | None,
    by_length: list[dict[str, Any]],
    title: str,
) -> list[Path]:
    """Confusion matrix, reliability diagram, ROC curve and accuracy by length, as PNG files."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    overall = float(np.mean(predicted_labels(p1) == y)) if len(y) else 0.0
    return [
        save_png(plt, confusion_matrix_figure(plt, y, p1, title), out_dir / "confusion_matrix.png"),
        save_png(
            plt, reliability_figure(plt, y, p1, uncalibrated, title), out_dir / "reliability.png"
        ),
        save_png(plt, roc_curve_figure(plt, y, p1, title), out_dir / "roc_curve.png"),
        save_png(
            plt,
            accuracy_by_length_figure(plt, by_length, overall, title),
            out_dir / "accuracy_by_length.png",
        ),
    ]
