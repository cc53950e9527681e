"""The reference profile of a run: how its validation reviews looked to the model.

Written to ``<run>/reference/`` as ``reference.json`` (schema-versioned: per-review lengths,
truncation, unknown-token shares and confidences, the vocabulary's top token ids, the predicted
positive rate) and ``embeddings.npy`` (a float16 sample of mean-pooled sentence embeddings), a
few MB at most. ``imdb-sentiment train`` writes it at the end of a run (``--no-reference``
skips it); ``imdb-sentiment drift RUN --build-reference`` writes it for any run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.atomic import write_json
from imdb_sentiment.errors import DataError, RunError

REFERENCE_DIR = "reference"
REFERENCE_FILE = "reference.json"
EMBEDDINGS_FILE = "embeddings.npy"
SCHEMA_VERSION = 1
TOP_TOKENS = 500
"""Vocabulary bins: the reference's most frequent token ids; the rest share one bin."""
TRAIN_REFERENCE_SIZE = 1000
"""Validation reviews ``train`` profiles: one forward pass over them (19 s for the demo MiniLM on
2 CPU cores, under 2% of its training), and the embedding test reads 500 at most."""


@dataclass
class Reference:
    """A loaded reference profile."""

    payload: dict[str, Any]
    embeddings: np.ndarray

    def array(self, key: str) -> np.ndarray:
        """A per-review array of the profile."""
        return np.asarray(self.payload["reviews"][key])


def reference_texts(run: Path, limit: int, seed: int = 0) -> tuple[list[str], str, int]:
    """The run's validation reviews (at most ``limit``), where they came from, and how many
    there were. More than ``limit`` are sampled at random with ``seed``."""
    import pandas as pd

    from imdb_sentiment.data.files import read_texts_file
    from imdb_sentiment.runs import run_data_dir

    predictions = run / "validation_predictions.parquet"
    if predictions.is_file():
        texts = pd.read_parquet(predictions, columns=["text"])["text"].astype(str).tolist()
        source = str(predictions)
    else:
        validation = run_data_dir(run) / "validation.parquet"
        if not validation.is_file():
            raise DataError(
                f"{run} has no validation_predictions.parquet and its data folder has no "
                f"{validation.name}; prepare the data again with `imdb-sentiment download`"
            )
        texts, source = read_texts_file(validation), str(validation)
    if len(texts) <= limit:
        return texts, source, len(texts)
    # Not the first ``limit``: a prepared validation split is ordered by label, and its head
    # would give the reference a positive rate far from the model's.
    rows = np.sort(np.random.default_rng(seed).choice(len(texts), size=limit, replace=False))
    return [texts[i] for i in rows], source, len(texts)


def build_reference(
    run: Path, *, limit: int = 2000, seed: int = 0, log: Any = lambda _m: None
) -> Path:
    """Profile the run's validation reviews and write ``<run>/reference/``; return the folder."""
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.profile import profile_texts

    texts, source, available = reference_texts(run, limit, seed)
    log(f"profiling {len(texts):,} of {available:,} validation reviews from {source}")
    predictor = Predictor.from_path(run, precision="fp32")
    profile = profile_texts(predictor, texts, embed_limit=limit, seed=seed)
    top = profile.token_counts.most_common(TOP_TOKENS)
    total = sum(profile.token_counts.values())
    payload = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "n_reviews": len(texts),
        "sampled_from": {"reviews": available, "seed": seed},
        "max_length": predictor.settings.max_length,
        "truncation": predictor.settings.truncation,
        "positive_rate": float(profile.predicted_positive.mean()),
        "truncated_share": float(profile.truncated.mean()),
        "vocabulary": {
            "token_ids": [t for t, _ in top],
            "counts": [c for _, c in top],
            "other": total - sum(c for _, c in top),
            "total": total,
        },
        "reviews": {
            "n_tokens": profile.n_tokens.tolist(),
            "truncated": profile.truncated.astype(int).tolist(),
            "unk_share": np.round(profile.unk_share, 6).tolist(),
            "confidence": np.round(profile.confidence, 6).tolist(),
            "predicted_positive": profile.predicted_positive.astype(int).tolist(),
        },
        "embeddings": {
            "file": EMBEDDINGS_FILE,
            "rows": int(profile.embeddings.shape[0]),
            "dim": int(profile.embeddings.shape[1]),
            "pooling": "mean, last layer",
        },
    }
    out = run / REFERENCE_DIR
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{EMBEDDINGS_FILE}.tmp.npy"
    np.save(tmp, profile.embeddings.astype(np.float16))
    tmp.replace(out / EMBEDDINGS_FILE)
    # The JSON goes last: a reference.json names only embeddings that are whole.
    write_json(out / REFERENCE_FILE, payload)
    _refresh_model_card(run)
    return out


def _refresh_model_card(run: Path) -> None:
    """Rewrite the run's model card, which lists the reference, where the run has one."""
    from imdb_sentiment.model_card import MODEL_CARD, write_model_card

    model_dir = run / "model"
    if (model_dir / MODEL_CARD).is_file():
        write_model_card(model_dir, run)


def load_reference(run: Path) -> Reference:
    """The run's reference; :class:`RunError` naming ``--build-reference`` when it has none."""
    folder = run / REFERENCE_DIR
    path = folder / REFERENCE_FILE
    if not path.is_file():
        raise RunError(
            f"{run} has no drift reference; build it with "
            f"`imdb-sentiment drift {run} --build-reference`"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        embeddings = np.load(folder / payload["embeddings"]["file"]).astype(np.float32)
    except (OSError, ValueError, KeyError, TypeError):
        raise RunError(
            f"{path} is damaged; rebuild it with `imdb-sentiment drift {run} --build-reference`"
        ) from None
    if payload.get("schema_version") != SCHEMA_VERSION:
        raise RunError(
            f"{path} has schema {payload.get('schema_version')!r}, this version reads "
            f"{SCHEMA_VERSION}; rebuild it with --build-reference"
        )
    return Reference(payload, embeddings)
