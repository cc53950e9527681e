"""Unlabelled review text for domain adaptation, kept apart from the texts models are judged on.

``adapt`` reads the prepared training split's texts and files of unlabelled reviews, never a
validation or test text. Every text is cleaned (:func:`imdb_sentiment.text.clean_text`, as the
tokenizer would) and hashed; a file holding a text of the prepared validation or test split is
refused, or with ``drop_overlap`` those texts are left out and counted, and a file that *is* a
prepared validation or test split is always refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.data.files import file_sha256, read_texts_file
from imdb_sentiment.data.splits import load_manifest, load_split
from imdb_sentiment.errors import ConfigError, DataError
from imdb_sentiment.text import clean_text

HELD_OUT_SPLITS = ("validation", "test")
"""Prepared splits whose texts adaptation never reads."""

Log = Callable[[str], None]


def text_hash(cleaned: str) -> str:
    """The hash a cleaned text is recognised by."""
    return hashlib.sha256(cleaned.encode("utf-8")).hexdigest()


def corpus_hash(texts: Iterable[str]) -> str:
    """One hash for a set of cleaned texts: the same texts give the same hash in any order."""
    digest = hashlib.sha256()
    for h in sorted(text_hash(t) for t in texts):
        digest.update(h.encode("ascii"))
    return digest.hexdigest()


@dataclass
class SourceRecord:
    """Where some of the corpus came from and how much of it was used."""

    path: str
    sha256: str
    rows: int
    used: int = 0
    dropped_empty: int = 0
    dropped_overlap: int = 0


@dataclass
class HeldOut:
    """What adaptation must not read: the prepared validation/test texts and split files."""

    data_dir: Path
    hashes: set[str] = field(default_factory=set)
    files: dict[str, str] = field(default_factory=dict)  # sha256 of a split file -> split name
    splits: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, data_dir: str | Path) -> HeldOut:
        """The held-out texts of a prepared data folder (:class:`DataError` if it has none)."""
        manifest = load_manifest(data_dir)
        held = cls(Path(data_dir).expanduser().resolve())
        for split in HELD_OUT_SPLITS:
            info = (manifest.get("splits") or {}).get(split)
            if not info:
                continue
            frame = load_split(data_dir, split)
            held.hashes.update(text_hash(clean_text(str(t))) for t in frame["text"].tolist())
            held.files[str(info.get("sha256", ""))] = split
            held.splits.append(split)
        return held

    def refuse_split_file(self, path: Path, sha256: str) -> None:
        """Refuse ``path`` when it is (a copy of) a prepared validation or test split."""
        split = self.files.get(sha256)
        if split is None:
            split = next(
                (s for s in self.splits if path.resolve() == self.data_dir / f"{s}.parquet"), None
            )
        if split is not None:
            raise DataError(
                f"{path} is the prepared {split} split of {self.data_dir}; "
                "adaptation never reads validation or test texts"
            )


@dataclass
class Corpus:
    """Cleaned, de-duplicated unlabelled texts and the record of where they came from."""

    texts: list[str]
    sources: list[SourceRecord]
    duplicates_dropped: int = 0
    held_out_splits: list[str] = field(default_factory=list)

    def split(self, max_texts: int | None, holdout: int, seed: int) -> tuple[list[str], list[str]]:
        """(texts to train on, texts held out to measure the masked-LM loss), seeded.

        ``max_texts`` caps both together; the held-out part is at most a tenth of them.
        """
        order = np.random.default_rng(seed).permutation(len(self.texts))
        if max_texts is not None:
            order = order[:max_texts]
        n_held = min(holdout, len(order) // 10)
        held, kept = order[:n_held], np.sort(order[n_held:])
        return [self.texts[i] for i in kept], [self.texts[i] for i in np.sort(held)]

    def record(self) -> dict[str, Any]:
        """The corpus part of the adaptation manifest."""
        return {
            "sources": [asdict(s) for s in self.sources],
            "texts": len(self.texts),
            "duplicates_dropped": self.duplicates_dropped,
            "corpus_sha256": corpus_hash(self.texts),
            "held_out_splits_checked": self.held_out_splits,
        }


def build_corpus(
    data_dir: str | Path,
    files: Sequence[str | Path],
    *,
    include_train: bool,
    drop_overlap: bool = False,
    text_column: str = "text",
    log: Log = print,
) -> Corpus:
    """The unlabelled texts of ``files`` (and the prepared training split's, with
    ``include_train``), checked against ``data_dir``'s validation and test splits."""
    if not files and not include_train:
        raise ConfigError(
            "nothing to adapt on: pass --unlabelled PATH (repeatable) and/or --include-train"
        )
    held = HeldOut.of(data_dir)
    texts: list[str] = []
    seen: set[str] = set()
    sources: list[SourceRecord] = []
    duplicates = 0
    for path, raw, record in _sources(held, files, include_train, text_column):
        kept = _checked(raw, held, record, drop_overlap)
        for text in kept:
            h = text_hash(text)
            if h in seen:
                duplicates += 1
                continue
            seen.add(h)
            texts.append(text)
            record.used += 1
        log(
            f"{path}: {record.used:,} of {record.rows:,} texts used"
            + (
                f" ({record.dropped_overlap:,} validation/test texts left out)"
                if record.dropped_overlap
                else ""
            )
        )
        sources.append(record)
    if not texts:
        raise DataError("the unlabelled files hold no text to adapt on")
    return Corpus(texts, sources, duplicates, held.splits)


def _sources(
    held: HeldOut, files: Sequence[str | Path], include_train: bool, text_column: str
) -> Iterable[tuple[Path, list[str], SourceRecord]]:
    """Each source's path, raw texts and record; split files are refused before reading."""
    for name in files:
        path = Path(name).expanduser()
        sha = file_sha256(path) if path.is_file() else ""
        held.refuse_split_file(path, sha)
        raw = read_texts_file(path, text_column=text_column)
        yield path, raw, SourceRecord(str(path), sha, len(raw))
    if include_train:
        path = held.data_dir / "train.parquet"
        raw = [str(t) for t in load_split(held.data_dir, "train")["text"].tolist()]
        yield path, raw, SourceRecord(str(path), file_sha256(path), len(raw))


def _checked(raw: list[str], held: HeldOut, record: SourceRecord, drop_overlap: bool) -> list[str]:
    """The cleaned, non-empty texts of one source; overlap with held-out texts is refused or,
    with ``drop_overlap``, left out."""
    cleaned = [clean_text(t) for t in raw]
    nonempty = [t for t in cleaned if t]
    record.dropped_empty = len(cleaned) - len(nonempty)
    kept = [t for t in nonempty if text_hash(t) not in held.hashes]
    record.dropped_overlap = len(nonempty) - len(kept)
    if record.dropped_overlap and not drop_overlap:
        raise DataError(
            f"{record.path}: {record.dropped_overlap:,} of its texts also occur in the prepared "
            f"{'/'.join(held.splits)} split of {held.data_dir}; adaptation never reads them "
            "(pass --drop-overlap to leave those texts out)"
        )
    return kept
