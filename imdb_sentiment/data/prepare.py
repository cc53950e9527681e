"""Getting IMDB into shape: cleaning, splits and the manifest that records them.

``prepare`` turns any supported source (see :mod:`imdb_sentiment.data.sources`) into
``train``/``validation``/``test`` parquet files plus a ``manifest.json`` holding counts and
hashes, so that a run can say exactly which data it saw. Validation is always carved from train
(stratified, seeded) unless the source ships one: the test split is only ever read by evaluation.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imdb_sentiment.atomic import write_json
from imdb_sentiment.data.files import (
    Columns,
    clean_column,
    file_sha256,
    normalize_labels,
    select_columns,
)
from imdb_sentiment.data.sources import HUB_DATASET, Log, Source, load_source
from imdb_sentiment.data.splits import MANIFEST, SPLITS, carve_validation
from imdb_sentiment.data.storage import check_free_space, check_writable
from imdb_sentiment.errors import ConfigError, DataError
from imdb_sentiment.text import LABELS, NEGATIVE, POSITIVE, label_name

FORMAT_VERSION = 1


def prepare(
    source: str = HUB_DATASET,
    output_dir: str | Path = "data/imdb",
    *,
    columns: Columns = Columns(),
    validation_fraction: float = 0.1,
    seed: int = 42,
    revision: str | None = None,
    force: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Prepare IMDB from ``source`` into ``output_dir`` and return the manifest.

    ``source`` is a hub dataset id, a folder of ``train.*``/``validation.*``/``test.*`` files, an
    (extracted) ``aclImdb`` folder or a single table used as the train split, its reviews and
    labels in the ``columns`` named (an ``aclImdb`` folder has its own). Texts are cleaned,
    labels normalised to 0/1, exact duplicates inside train dropped, test reviews that also occur
    in train counted (never dropped), and a stratified, seeded validation split is carved from
    train unless the source has one. ``output_dir`` receives ``{train,validation,test}.parquet``
    and ``manifest.json``; an existing prepared folder is only replaced with ``force``, and then
    atomically, so a failure leaves the old data untouched.
    """
    source = str(source)  # a Path is a natural thing to pass from Python
    if not 0 < validation_fraction <= 0.5:
        raise ConfigError(
            f"validation fraction must be in (0, 0.5], got {validation_fraction};"
            " 0.1 is the usual choice"
        )
    output = Path(output_dir).expanduser().absolute()
    _check_output_dir(output, force)

    loaded = load_source(source, columns.text, columns.label, revision, log)
    splits = {
        name: _tidy_split(frame, name, loaded.text_column, loaded.label_column, source, log)
        for name, frame in loaded.splits.items()
    }
    splits["train"], duplicates = _drop_duplicates(splits["train"], log)
    _require_both_labels(splits["train"], source)
    overlap = _report_overlap(splits, log)

    provided_validation = "validation" in splits
    if not provided_validation:
        splits["train"], splits["validation"] = carve_validation(
            splits["train"], validation_fraction, seed
        )
    for name in SPLITS:
        if name in splits:
            log(f"{name}: {_describe(splits[name])}")
    carved = None if provided_validation else {"fraction": validation_fraction, "seed": seed}
    manifest = _manifest(source, loaded, carved, duplicates=duplicates, overlap=overlap)
    check_free_space(output.parent, _estimated_size(splits), "the prepared splits")
    _write_atomically(output, splits, manifest)
    log(
        f"wrote {', '.join(f'{n}.parquet' for n in SPLITS if n in splits)} and {MANIFEST}"
        f" to {output}"
    )
    return manifest


def _manifest(
    source: str, loaded: Source, carved: dict[str, Any] | None, *, duplicates: int, overlap: int
) -> dict[str, Any]:
    """What was prepared, from where, and how validation was made (``carved`` None: provided)."""
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "source_kind": loaded.kind,
        **loaded.where,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "splits": {},
        "validation": {
            "fraction": carved["fraction"] if carved else None,
            "seed": carved["seed"] if carved else None,
            "carved_from": "train" if carved else None,
        },
        "duplicates_dropped": duplicates,
        "test_train_overlap": overlap,
        "text_column": loaded.text_column,
        "label_column": loaded.label_column,
    }


def _check_output_dir(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise DataError(f"{output} exists and is not a folder; choose another output folder")
    # The splits are staged beside the output folder and renamed into place: its parent must
    # take new files. Checked before the source is read, which may take minutes.
    check_writable(output.parent, hint="choose another --output folder")
    if not output.exists():
        return
    if not any(output.iterdir()):
        return
    # --force deletes the folder, so only ever let it delete something we wrote ourselves.
    if not (output / MANIFEST).is_file():
        raise DataError(
            f"{output} is not empty and holds no {MANIFEST}, so it is not prepared data;"
            " choose an empty or new output folder"
        )
    if not force:
        raise DataError(f"{output} already holds prepared data; pass --force to replace it")


def _estimated_size(splits: dict[str, pd.DataFrame]) -> int:
    """Bytes the parquet splits will take: about 2/3 of the raw text (snappy, IMDB)."""
    raw = sum(int(frame["text"].str.len().sum()) for frame in splits.values())
    return raw * 2 // 3 + (1 << 20)


def _tidy_split(
    frame: pd.DataFrame, split: str, text_column: str, label_column: str, source: str, log: Log
) -> pd.DataFrame:
    """Select and rename the columns, normalise labels, clean texts and drop empty ones."""
    where = f"{source} ({split} split)"
    if frame.empty:
        raise DataError(f"{where} holds no rows; it needs at least one review")
    frame = select_columns(frame, text_column, label_column, where)
    frame["label"] = normalize_labels(frame["label"], column=label_column, source=where)
    frame["text"] = clean_column(frame["text"])
    empty = frame["text"] == ""
    if empty.any():
        log(f"{split}: dropped {int(empty.sum())} reviews with empty text")
        frame = frame[~empty]
    if frame.empty:
        raise DataError(f"{where} has no reviews with text in column {text_column!r}")
    return frame.reset_index(drop=True)


def _drop_duplicates(train: pd.DataFrame, log: Log) -> tuple[pd.DataFrame, int]:
    duplicated = train["text"].duplicated(keep="first")
    count = int(duplicated.sum())
    if count:
        log(f"train: dropped {count} exact duplicate reviews (kept the first of each)")
    return train[~duplicated].reset_index(drop=True), count


def _require_both_labels(train: pd.DataFrame, source: str) -> None:
    present = set(train["label"].unique().tolist())
    if len(present) < 2:
        only = label_name(present.pop())
        raise DataError(
            f"{source}: the train split has only {only} reviews; a classifier needs both"
            " negative and positive ones (check the label column)"
        )


def _report_overlap(splits: dict[str, pd.DataFrame], log: Log) -> int:
    if "test" not in splits:
        return 0
    # Test is sacred: overlapping reviews stay in it, and the count lets readers judge the metric.
    overlap = int(splits["test"]["text"].isin(set(splits["train"]["text"])).sum())
    if overlap:
        log(f"test: {overlap} reviews also occur in train (kept; counted in the manifest)")
    return overlap


def _label_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["label"].value_counts()
    return {name: int(counts.get(label, 0)) for label, name in enumerate(LABELS)}


def _describe(frame: pd.DataFrame) -> str:
    counts = _label_counts(frame)
    share = counts[POSITIVE] / len(frame) if len(frame) else 0.0
    return (
        f"{len(frame):,} reviews ({counts[NEGATIVE]:,} negative, {counts[POSITIVE]:,}"
        f" positive; {share:.1%} positive)"
    )


def _write_atomically(
    output: Path, splits: dict[str, pd.DataFrame], manifest: dict[str, Any]
) -> None:
    """Write everything into a sibling temp folder, then swap it in with renames."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # mkdir rather than mkdtemp: mkdtemp's 0700 mode would survive the rename into place.
    staging = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for name in SPLITS:
            if name in splits:
                manifest["splits"][name] = _write_split(splits[name], staging / f"{name}.parquet")
        write_json(staging / MANIFEST, manifest)
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_split(frame: pd.DataFrame, path: Path) -> dict[str, Any]:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return {
        "rows": len(frame),
        "labels": _label_counts(frame),
        "sha256": file_sha256(path),
        "file": path.name,
    }


def _swap_into_place(staging: Path, output: Path) -> None:
    if not output.exists():
        staging.rename(output)
        return
    retired = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
    output.rename(retired)
    try:
        staging.rename(output)
    except BaseException:
        retired.rename(output)
        raise
    shutil.rmtree(retired, ignore_errors=True)
