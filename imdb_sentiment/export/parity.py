"""Does an exported model reproduce the PyTorch model: the reviews, the comparison, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.errors import DataError, ModelError
from imdb_sentiment.text import predicted_labels

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor

MIN_AGREEMENT = 0.995
"""Share of parity reviews on which an exported model must give PyTorch's label."""
MAX_ACCURACY_DROP = 0.003
"""Most accuracy (0.3 points) an exported model may lose against PyTorch where labels are known."""


@dataclass
class Parity:
    """How closely an exported model reproduces the PyTorch model on the parity reviews."""

    variant: str
    file: str
    n: int
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    passed: bool
    accuracy: float | None = None
    torch_accuracy: float | None = None
    recipe: str | None = None


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray | None,
    *,
    variant: str,
    file: str,
    min_agreement: float,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
) -> Parity:
    """Label agreement and positive-probability differences of two ``(n, 2)`` outputs.

    It passes with at least ``min_agreement`` label agreement and, where labels are known, at
    most ``max_accuracy_drop`` accuracy lost.
    """
    ref_label = predicted_labels(reference[:, 1])
    cand_label = predicted_labels(candidate[:, 1])
    diff = np.abs(reference[:, 1] - candidate[:, 1])
    agreement = float(np.mean(ref_label == cand_label))
    acc = torch_acc = None
    if labels is not None:
        acc = float(np.mean(cand_label == labels))
        torch_acc = float(np.mean(ref_label == labels))
    # A hair of slack so that an exact 0.3-point drop is not refused by float rounding.
    kept_accuracy = acc is None or torch_acc is None or torch_acc - acc <= max_accuracy_drop + 1e-9
    return Parity(
        variant=variant,
        file=file,
        n=len(reference),
        agreement=agreement,
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        passed=agreement >= min_agreement and kept_accuracy,
        accuracy=acc,
        torch_accuracy=torch_acc,
    )


def refuse_failed(reports: list[Parity], min_agreement: float) -> None:
    """Raise :class:`ModelError` naming the first exported model that missed ``min_agreement``."""
    failed = [r for r in reports if not r.passed]
    if not failed:
        return
    r = failed[0]
    which = f"{r.variant} (best int8 recipe: {r.recipe})" if r.recipe else r.variant
    lost = ""
    if r.accuracy is not None and r.torch_accuracy is not None:
        lost = f", accuracy {r.accuracy:.4f} vs {r.torch_accuracy:.4f}"
    raise ModelError(
        f"export refused: the {which} model gives PyTorch's label on "
        f"{r.agreement:.2%} of {r.n:,} reviews (needs {min_agreement:.1%} and at most "
        f"{MAX_ACCURACY_DROP * 100:.1f} points of accuracy lost; "
        f"max |Δp| {r.max_abs_diff:.4f}{lost}); nothing was written"
    )


def probabilities(predictor: Predictor, texts: list[str]) -> np.ndarray:
    """Calibrated probabilities of the truncated reviews: what an exported graph computes."""
    from imdb_sentiment.metrics.classification import softmax

    return softmax(predictor.logits(predictor.encode(texts)), predictor.settings.temperature)


def _from_file(
    file: str | Path, text_column: str, label_column: str
) -> tuple[list[str], np.ndarray | None]:
    """Texts of ``file``, with labels when it has a usable label column."""
    from imdb_sentiment.data.files import read_labelled_file, read_texts_file

    try:
        frame = read_labelled_file(file, text_column=text_column, label_column=label_column)
    except DataError:
        return read_texts_file(file, text_column=text_column), None
    return frame["text"].tolist(), frame["label"].to_numpy()


def _from_validation(folder: Path) -> tuple[list[str], np.ndarray]:
    """Texts and labels of a prepared data folder's validation split."""
    from imdb_sentiment.data.splits import load_split

    try:
        frame = load_split(folder, "validation")
    except DataError as exc:
        raise DataError(
            f"{exc} (the parity check needs validation reviews; pass --data DIR or --file PATH)"
        ) from None
    return frame["text"].tolist(), frame["label"].to_numpy()


def parity_reviews(
    run: Path,
    *,
    file: str | Path | None = None,
    data_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_samples: int | None = 500,
) -> tuple[list[str], np.ndarray | None, str]:
    """Reviews (and labels when known) to check an export on: validation, or ``file``."""
    from imdb_sentiment.runs import run_data_dir

    labels: np.ndarray | None
    if file is not None:
        texts, labels = _from_file(file, text_column, label_column)
        source = str(file)
    else:
        folder = Path(data_dir) if data_dir is not None else run_data_dir(run)
        texts, labels = _from_validation(folder)
        source = f"validation split of {folder}"
    if max_samples is not None and len(texts) > max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(texts), max_samples, replace=False))
        texts = [texts[i] for i in pick]
        labels = labels[pick] if labels is not None else None
    if not texts:
        raise DataError(f"no reviews to check the export on in {source}")
    return texts, (labels.astype(int) if labels is not None else None), source
