"""Self-training's first half: label unlabelled reviews with trained runs and keep the sure ones.

:func:`pseudo_label` reads the pool (:func:`imdb_sentiment.data.pseudo.unlabelled_pool`: no
training, validation or test text), scores it with each teacher run through the one
:class:`~imdb_sentiment.inference.predictor.Predictor` (calibrated probabilities, a chunk of
reviews at a time, one model in memory at a time), averages the teachers' positive
probabilities, keeps the reviews whose confidence reaches the threshold (optionally the same
number of each label) and writes them as ``text,label,confidence`` beside a manifest.
``imdb-sentiment train --extra-train FILE`` trains on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment import __version__
from imdb_sentiment.atomic import write_json
from imdb_sentiment.data.files import file_sha256
from imdb_sentiment.data.pseudo import PSEUDO_COLUMNS, manifest_path, unlabelled_pool
from imdb_sentiment.errors import ConfigError, DataError
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.text import LABELS, predicted_labels

Log = Callable[[str], None]

CHUNK = 1024
"""Reviews tokenized and scored at a time: 50,000 reviews never sit in memory as token ids."""


@dataclass
class PseudoLabelSettings:
    """How sure a teacher must be and how many reviews to keep."""

    min_confidence: float = 0.9
    max_reviews: int | None = None
    balance: bool = False
    seed: int = 42
    batch_size: int = 64
    precision: str = "auto"
    chunk_size: int = CHUNK
    text_column: str = "text"
    drop_overlap: bool = False

    def check(self) -> PseudoLabelSettings:
        """Raise :class:`ConfigError` for a value out of range; return ``self``."""
        if not 0.5 < self.min_confidence <= 1:
            raise ConfigError(
                "--min-confidence must be in (0.5, 1] (the teacher's probability "
                f"of the label it gives), got {self.min_confidence}"
            )
        for flag, value in (
            ("--max-reviews", self.max_reviews),
            ("--batch-size", self.batch_size),
            ("chunk size", self.chunk_size),
        ):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        return self


@dataclass
class PseudoLabelResult:
    """What :func:`pseudo_label` wrote."""

    output: Path
    manifest_path: Path
    manifest: dict[str, Any]


def teacher_probabilities(
    teacher: Path, texts: Sequence[str], settings: PseudoLabelSettings, log: Log = print
) -> tuple[np.ndarray, dict[str, Any]]:
    """The teacher's calibrated positive-class probability for each text, scored a chunk at a
    time, and what the manifest says about the teacher."""
    predictor = Predictor.from_path(
        teacher, batch_size=settings.batch_size, precision=settings.precision
    )
    out = np.empty(len(texts), dtype=np.float64)
    start = time.perf_counter()
    for lo in range(0, len(texts), settings.chunk_size):
        hi = min(lo + settings.chunk_size, len(texts))
        out[lo:hi] = predictor.predict_proba(texts[lo:hi])[:, 1]
        log(f"{teacher}: {hi:,} of {len(texts):,} reviews labelled")
    seconds = time.perf_counter() - start
    return out, _teacher_record(teacher, predictor, seconds, len(texts))


def _teacher_record(teacher: Path, predictor: Predictor, seconds: float, n: int) -> dict[str, Any]:
    s = predictor.settings
    record: dict[str, Any] = {
        "run": str(teacher.resolve()),
        "base_model": s.base_model,
        "max_length": s.max_length,
        "truncation": s.truncation,
        "temperature": s.temperature,
        "precision": predictor.precision,
        "seconds": round(seconds, 2),
        "reviews_per_second": round(n / seconds, 1) if seconds > 0 else None,
    }
    try:
        metrics = json.loads((teacher / "metrics.json").read_text(encoding="utf-8"))["metrics"]
        record["validation_accuracy"] = metrics.get("accuracy")
    except (OSError, ValueError, KeyError, TypeError):
        pass  # a bare model folder has no metrics; the rest still says which model it was
    return record


def select(
    texts: Sequence[str], positive: np.ndarray, min_confidence: float, balance: bool
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The confident reviews (most confident first within each label when balancing) as
    ``text,label,confidence`` in pool order, and the counts per label before and after."""
    labels = predicted_labels(positive)
    confidence = np.where(labels == 1, positive, 1.0 - positive)
    sure = confidence >= min_confidence
    per_label = {name: int((sure & (labels == i)).sum()) for i, name in enumerate(LABELS)}
    keep = sure.copy()
    if balance:
        n = min(per_label.values())
        keep[:] = False
        for i in range(len(LABELS)):
            idx = np.flatnonzero(sure & (labels == i))
            # Most confident first; ties keep pool order, so the choice is deterministic.
            keep[idx[np.argsort(-confidence[idx], kind="stable")[:n]]] = True
    frame = pd.DataFrame(
        {
            "text": [t for t, k in zip(texts, keep, strict=True) if k],
            "label": labels[keep].astype("int64"),
            "confidence": confidence[keep].astype("float64"),
        },
        columns=list(PSEUDO_COLUMNS),
    )
    kept = {name: int((labels[keep] == i).sum()) for i, name in enumerate(LABELS)}
    predicted = {name: int((labels == i).sum()) for i, name in enumerate(LABELS)}
    return frame, {"predicted": predicted, "confident": per_label, "kept": kept}


def pseudo_label(
    teachers: Sequence[Path],
    unlabelled: Path,
    output: Path,
    settings: PseudoLabelSettings,
    *,
    data_dir: str | Path,
    log: Log = print,
) -> PseudoLabelResult:
    """Label the reviews of ``unlabelled`` that may be trained on (none of ``data_dir``'s
    splits) with the average of ``teachers``' probabilities, keep the confident ones, and write
    ``output`` (parquet) and its manifest; each in one rename."""
    settings.check()
    start = time.perf_counter()
    pool = unlabelled_pool(
        data_dir,
        unlabelled,
        text_column=settings.text_column,
        drop_overlap=settings.drop_overlap,
        max_reviews=settings.max_reviews,
        seed=settings.seed,
        log=log,
    )
    total = np.zeros(len(pool.texts), dtype=np.float64)
    records = []
    for teacher in teachers:
        probs, record = teacher_probabilities(teacher, pool.texts, settings, log)
        total += probs
        records.append(record)
    positive = total / len(teachers)
    frame, labels = select(pool.texts, positive, settings.min_confidence, settings.balance)
    if frame.empty:
        raise _nothing_kept(positive, settings)
    _write_parquet(frame, output)
    manifest = {
        "kind": "pseudo-labels",
        "teachers": records,
        "source": pool.source,
        "data_dir": str(Path(data_dir).expanduser().resolve()),
        "held_out_splits_checked": pool.held_out_splits,
        "settings": asdict(settings),
        "counts": {**pool.counts, "labelled": len(pool.texts), "kept": len(frame)},
        "labels": labels,
        "output": {
            "path": str(output.resolve()),
            "sha256": file_sha256(output),
            "rows": len(frame),
            "columns": list(PSEUDO_COLUMNS),
        },
        "seconds": round(time.perf_counter() - start, 2),
        "imdb_sentiment_version": __version__,
    }
    where = manifest_path(output)
    write_json(where, manifest)
    return PseudoLabelResult(output, where, manifest)


def _nothing_kept(positive: np.ndarray, settings: PseudoLabelSettings) -> DataError:
    """Why no review passed the selection, with the most confident probability seen."""
    best = float(np.max(np.maximum(positive, 1.0 - positive)))
    which = (
        "reviews of one label at most (--balance needs both)" if settings.balance else "no review"
    )
    return DataError(
        f"nothing kept: {which} reached --min-confidence {settings.min_confidence} "
        f"(the most confident: {best:.3f}); lower it or use a better teacher"
    )


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write beside ``path`` and rename over it: a failure leaves any old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
