"""Pseudo-labelled reviews for self-training: the unlabelled pool a teacher labels, and the
extra training rows ``train --extra-train`` adds.

Both sides keep the reviews models are judged on out of training. The pool (for
``pseudo-label``) is cleaned, de-duplicated, stripped of texts the prepared training split
already holds (they have real labels), and checked against the prepared validation and test
splits as ``adapt`` checks its corpus (:class:`imdb_sentiment.data.corpus.HeldOut`): a file
holding such texts is refused, or with ``drop_overlap`` they are left out and counted. The extra
rows (for ``train``) are read as a labelled table; rows whose cleaned text is a validation, test
or training review, or repeats an earlier row, are dropped and counted in the run's data
manifest, so they can only ever join the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.data.corpus import HeldOut, text_hash
from imdb_sentiment.data.files import (
    clean_column,
    file_sha256,
    normalize_labels,
    read_table,
    read_texts_file,
)
from imdb_sentiment.data.splits import load_split
from imdb_sentiment.errors import DataError
from imdb_sentiment.text import LABELS, clean_text

Log = Callable[[str], None]

PSEUDO_COLUMNS = ("text", "label", "confidence")
"""The columns ``pseudo-label`` writes (cleaned text, 0/1 label, the teacher's confidence)."""
UNSUP_FILE = "unsup.parquet"
"""Where ``pseudo-label`` looks for unlabelled reviews when none are named: beside the
prepared splits (``download`` writes none; copy or link IMDB's ``unsup`` file there)."""


@dataclass
class Pool:
    """The unlabelled reviews to label, cleaned and unique, and what was left out."""

    texts: list[str]
    source: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)
    held_out_splits: list[str] = field(default_factory=list)


def default_unlabelled(data_dir: str | Path) -> Path:
    """``<data dir>/unsup.parquet``, or a :class:`DataError` saying how to name a file."""
    path = Path(data_dir).expanduser() / UNSUP_FILE
    if not path.is_file():
        raise DataError(
            f"no unlabelled reviews named and {path} does not exist; pass "
            "--unlabelled PATH (e.g. IMDB's unsup.parquet)"
        )
    return path


def unlabelled_pool(
    data_dir: str | Path,
    path: str | Path,
    *,
    text_column: str = "text",
    drop_overlap: bool = False,
    max_reviews: int | None = None,
    seed: int = 42,
    log: Log = print,
) -> Pool:
    """The reviews of ``path`` a teacher may label: cleaned, de-duplicated, none from the
    prepared training split, none from its validation or test split (refused, or left out
    with ``drop_overlap``); a seeded sample of ``max_reviews`` of them when given."""
    path = Path(path).expanduser()
    held = HeldOut.of(data_dir)
    sha = file_sha256(path) if path.is_file() else ""
    held.refuse_split_file(path, sha)
    raw = read_texts_file(path, text_column=text_column)
    train = {
        text_hash(clean_text(str(t))) for t in load_split(held.data_dir, "train")["text"].tolist()
    }
    counts = {"rows": len(raw), "empty": 0, "duplicates": 0, "in_train": 0, "held_out": 0}
    texts: list[str] = []
    seen: set[str] = set()
    for text in (clean_text(t) for t in raw):
        h = text_hash(text)
        reason = _left_out(text, h, held.hashes, train, seen)
        if reason is not None:
            counts[reason] += 1
            continue
        seen.add(h)
        texts.append(text)
    if counts["held_out"] and not drop_overlap:
        raise DataError(
            f"{path}: {counts['held_out']:,} of its texts also occur in the prepared "
            f"{'/'.join(held.splits)} split of {held.data_dir}; they are never "
            "labelled for training (pass --drop-overlap to leave them out)"
        )
    if max_reviews is not None and max_reviews < len(texts):
        keep = np.sort(np.random.default_rng(seed).permutation(len(texts))[:max_reviews])
        texts = [texts[i] for i in keep]
    if not texts:
        raise DataError(
            f"{path} holds no review left to label (all empty, repeated, training "
            "or held-out texts)"
        )
    counts["pool"] = len(texts)
    log(
        f"{path}: {len(texts):,} of {len(raw):,} reviews to label ({counts['in_train']:,} "
        f"training texts, {counts['held_out']:,} validation/test texts and "
        f"{counts['duplicates']:,} repeats left out)"
    )
    source = {"path": str(path), "sha256": sha, "rows": len(raw), "text_column": text_column}
    return Pool(texts, source, counts, held.splits)


def _left_out(text: str, h: str, held_out: set[str], train: set[str], seen: set[str]) -> str | None:
    """Why a cleaned review is not labelled (a key of the pool's counts), or None to keep it."""
    if not text:
        return "empty"
    if h in held_out:
        return "held_out"
    if h in train:
        return "in_train"
    return "duplicates" if h in seen else None


# ----------------------------------------------------------------- extra rows for training


@dataclass
class ExtraRecord:
    """What ``--extra-train`` added, as the run's data manifest records it."""

    path: str
    sha256: str
    rows: int
    added: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    dropped_held_out: int = 0
    dropped_in_train: int = 0
    dropped_duplicates: int = 0
    held_out_splits_checked: list[str] = field(default_factory=list)
    pseudo_label_manifest: dict[str, Any] | None = None


def extra_training_rows(
    data_dir: str | Path, path: str | Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labelled rows of ``path`` that may join ``data_dir``'s training split (``text``,
    ``label``), and the record of what was read and dropped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"--extra-train {path}: no such file")
    held = HeldOut.of(data_dir)
    held.refuse_split_file(path, file_sha256(path))
    frame = _labelled_rows(path)
    record = ExtraRecord(
        str(path.resolve()),
        file_sha256(path),
        len(frame),
        held_out_splits_checked=held.splits,
        pseudo_label_manifest=_summary(manifest_path(path)),
    )
    train = {
        text_hash(clean_text(str(t))) for t in load_split(held.data_dir, "train")["text"].tolist()
    }
    hashes = [text_hash(t) for t in frame["text"].tolist()]
    in_held = np.array([h in held.hashes for h in hashes], dtype=bool)
    in_train = np.array([h in train for h in hashes], dtype=bool) & ~in_held
    repeated = pd.Series(hashes).duplicated().to_numpy() & ~in_held & ~in_train
    keep = ~(in_held | in_train | repeated)
    record.dropped_held_out = int(in_held.sum())
    record.dropped_in_train = int(in_train.sum())
    record.dropped_duplicates = int(repeated.sum())
    kept = frame[keep].reset_index(drop=True)
    if kept.empty:
        raise DataError(
            f"--extra-train {path}: no row left to add (all are training, "
            "validation/test or repeated texts)"
        )
    record.added = len(kept)
    counts = kept["label"].value_counts()
    record.labels = {name: int(counts.get(i, 0)) for i, name in enumerate(LABELS)}
    return kept, asdict(record)


def add_extra_rows(
    train: pd.DataFrame, data_dir: str | Path, path: str | Path | None, log: Log = print
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """``train`` with ``path``'s rows appended (none when ``path`` is None) and their record."""
    if not path:
        return train, None
    extra, record = extra_training_rows(data_dir, path)
    dropped = (record["dropped_held_out"], record["dropped_in_train"], record["dropped_duplicates"])
    log(
        f"--extra-train {path}: {len(extra):,} of {record['rows']:,} rows added to the "
        f"training split ({dropped[0]:,} validation/test, {dropped[1]:,} training and "
        f"{dropped[2]:,} repeated texts dropped)"
    )
    return pd.concat([train, extra], ignore_index=True), record


def _labelled_rows(path: Path) -> pd.DataFrame:
    """``path``'s ``text`` (cleaned, none empty) and ``label`` (0/1) columns."""
    frame = read_table(path)
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing or frame.empty:
        present = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataError(
            f"--extra-train {path} needs rows with a 'text' and a 'label' column "
            f"(columns present: {present}); write it with `imdb-sentiment "
            "pseudo-label`"
        )
    frame = frame[["text", "label"]].copy()
    frame["label"] = normalize_labels(frame["label"], source=str(path))
    frame["text"] = clean_column(frame["text"])
    empty = int((frame["text"] == "").sum())
    if empty:
        raise DataError(f"--extra-train {path}: {empty:,} rows have no text; remove them")
    return frame


def manifest_path(output: str | Path) -> Path:
    """The manifest ``pseudo-label`` writes beside its output: ``<stem>.manifest.json``."""
    path = Path(output)
    return path.with_name(f"{path.stem}.manifest.json")


def _summary(path: Path) -> dict[str, Any] | None:
    """The parts of a pseudo-label manifest worth repeating in a run's data manifest."""
    import json

    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict):
        return None
    keys = ("teachers", "source", "settings", "counts", "labels")
    return {k: manifest[k] for k in keys if k in manifest}
