"""Getting IMDB into shape: sources, cleaning, splits and the manifest that records them.

``prepare`` turns any supported source (a hub dataset id, a folder of split files, an extracted
``aclImdb/`` folder or a single table) into ``train``/``validation``/``test`` parquet files plus a
``manifest.json`` holding counts and hashes, so that a run can say exactly which data it saw.
Validation is always carved from train (stratified, seeded) unless the source ships one: the
test split is only ever read by evaluation.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imdb_sentiment.errors import DataError
from imdb_sentiment.text import clean_text

HUB_DATASET = "stanfordnlp/imdb"
SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)

_NEGATIVE = frozenset({"neg", "negative", "0", "false"})
_POSITIVE = frozenset({"pos", "positive", "1", "true"})
_LABEL_NAMES = ("negative", "positive")
_MAX_SHOWN = 5

# Hub ids are "name" or "owner/name"; anything else that does not exist locally is a bad path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# "train.parquet", or hub-style shards such as "train-00000-of-00002.parquet".
_SPLIT_FILE = re.compile(
    r"^(?P<split>train|validation|test)(-\d+-of-\d+)?\.(parquet|csv|tsv|jsonl|json)$"
)
_ACL_NAME = re.compile(r"^(?P<id>\d+)_(?P<rating>\d+)\.txt$")

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Cleaning and labels
# --------------------------------------------------------------------------------------------


def normalize_labels(values: pd.Series, *, column: str = "label", source: str = "") -> pd.Series:
    """Map label values to an ``int64`` series of 0 (negative) and 1 (positive).

    Accepts 0/1 as numbers or strings, booleans, and (case-insensitively) ``neg``/``negative``/
    ``false`` and ``pos``/``positive``/``true``. Any other value, including a missing one, raises
    :class:`DataError` listing up to five offending values; ``source`` and ``column`` name where
    they came from.
    """
    labels: list[int] = []
    offenders: list[str] = []
    for value in values.tolist():
        label = _label_of(value)
        if label is None:
            shown = _show_value(value)
            if shown not in offenders:
                offenders.append(shown)
            continue
        labels.append(label)
    if offenders:
        prefix = f"{source}: " if source else ""
        raise DataError(
            f"{prefix}column {column!r} has unknown label values: {_shorten(offenders)}"
            " (expected 0/1 or negative/positive)"
        )
    return pd.Series(labels, index=values.index, dtype="int64", name=values.name)


def _label_of(value: object) -> int | None:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, numbers.Real):
        # NaN compares unequal to both, so a missing label falls through to None.
        if value == 0:
            return 0
        if value == 1:
            return 1
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _NEGATIVE:
            return 0
        if key in _POSITIVE:
            return 1
    return None


def _show_value(value: object) -> str:
    if _is_missing(value):
        return "<missing>"
    # A label column with a gap is read as floats; show 3.0 as the 3 that was written.
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    return repr(value)


def _shorten(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_SHOWN])
    if len(items) > _MAX_SHOWN:
        shown += f" and {len(items) - _MAX_SHOWN} more"
    return shown


def _clean_column(values: pd.Series) -> pd.Series:
    """Clean every text in a column; missing values become "" so callers can spot them."""
    cleaned = ["" if _is_missing(value) else clean_text(str(value)) for value in values.tolist()]
    return pd.Series(cleaned, index=values.index, dtype="str", name=values.name)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a ``.parquet``, ``.csv``, ``.tsv``, ``.jsonl`` or ``.json`` (JSON lines) file.

    The format is chosen by suffix. Missing, empty, non-UTF-8, corrupt or unsupported files raise
    :class:`DataError` naming the file.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r};"
            f" use one of {', '.join(TABLE_SUFFIXES)}"
        )
    _check_readable_file(path)
    try:
        return _read_by_suffix(path, suffix)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (bad byte at position {exc.start}); re-save it as UTF-8"
        ) from exc
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a corrupt file
        raise DataError(
            f"{path} could not be read as {suffix[1:]} ({_one_line(exc)}); check the file"
        ) from exc


def _read_by_suffix(path: Path, suffix: str) -> pd.DataFrame:
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        # Only truly empty cells count as missing: a review reading "NA" or "null" is text.
        return pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            encoding="utf-8",
            keep_default_na=False,
            na_values=[""],
        )
    return _read_json(path, suffix)


def _read_json(path: Path, suffix: str) -> pd.DataFrame:
    # A .json file may hold one array of records rather than JSON lines; its first byte tells.
    if suffix == ".json" and _first_char(path) == "[":
        return pd.read_json(path, encoding="utf-8", convert_dates=False)
    return pd.read_json(path, lines=True, encoding="utf-8", convert_dates=False)


def _first_char(path: Path) -> str:
    with path.open("rb") as handle:
        return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1].decode("ascii", "replace")


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; it holds no reviews")


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def read_labelled_file(
    path: str | Path, *, text_column: str = "text", label_column: str = "label"
) -> pd.DataFrame:
    """Read a labelled file (for ``eval --file``) into columns ``text`` and ``label``.

    ``text`` is cleaned with :func:`clean_text` and ``label`` normalised to 0/1; other columns
    (such as ``rating``) are kept after them. A missing column, an empty file or a row with empty
    text raises :class:`DataError`.
    """
    frame = read_table(path)
    if frame.empty:
        raise DataError(
            f"{path} holds no rows; it needs a {text_column!r} and a "
            f"{label_column!r} column with at least one review"
        )
    frame = _select_columns(frame, text_column, label_column, str(path))
    frame["label"] = normalize_labels(frame["label"], column=label_column, source=str(path))
    frame["text"] = _clean_column(frame["text"])
    empty = _empty_rows(frame["text"])
    if empty:
        raise DataError(
            f"{path}: column {text_column!r} is empty in row {_shorten(empty)}"
            " (rows counted from 1); fill in or remove those rows"
        )
    return frame.reset_index(drop=True)


def read_texts_file(path: str | Path, *, text_column: str = "text") -> list[str]:
    """Read the reviews to classify (for ``predict --file``), uncleaned.

    A ``.txt`` file holds one review per line (blank lines skipped); a ``.csv``, ``.tsv``,
    ``.jsonl``, ``.json`` or ``.parquet`` file holds them in ``text_column``. A missing, empty,
    non-UTF-8 file, a missing column or a table row without text raises :class:`DataError`.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        texts = _read_text_lines(path)
    elif suffix in TABLE_SUFFIXES:
        texts = _read_text_column(path, text_column)
    else:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r};"
            f" use one of {', '.join(TEXT_SUFFIXES + TABLE_SUFFIXES)}"
        )
    if not texts:
        raise DataError(f"{path} holds no reviews; add at least one")
    return texts


def _read_text_lines(path: Path) -> list[str]:
    _check_readable_file(path)
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (bad byte at position {exc.start}); re-save it as UTF-8"
        ) from exc
    return [line for line in content.splitlines() if line.strip()]


def _read_text_column(path: Path, text_column: str) -> list[str]:
    frame = read_table(path)
    _require_columns(frame, {text_column: "--text-column"}, str(path))
    texts = ["" if _is_missing(v) else str(v) for v in frame[text_column].tolist()]
    empty = [str(i + 1) for i, text in enumerate(texts) if not text.strip()]
    if len(empty) == len(texts):
        return []
    # Predictions line up with the table's rows, so a hole is an error rather than skipped.
    if empty:
        raise DataError(
            f"{path}: column {text_column!r} is empty in row {_shorten(empty)}"
            " (rows counted from 1); fill in or remove those rows"
        )
    return texts


def _require_columns(frame: pd.DataFrame, flags: Mapping[str, str], source: str) -> None:
    """Raise unless every column is present; ``flags`` maps each column to the flag choosing it."""
    present = [str(c) for c in frame.columns]
    for column, flag in flags.items():
        if column not in present:
            raise DataError(
                f"{source} has no column {column!r} (columns present: {', '.join(present)});"
                f" name the right one with {flag}"
            )


def _select_columns(
    frame: pd.DataFrame, text_column: str, label_column: str, source: str
) -> pd.DataFrame:
    """Return ``frame`` with ``text`` and ``label`` first (renamed) and other columns after."""
    if text_column == label_column:
        raise DataError(f"the text and label columns are both {text_column!r}; they must differ")
    _require_columns(frame, {text_column: "--text-column", label_column: "--label-column"}, source)
    chosen = {text_column: "text", label_column: "label"}
    # A column already called "text"/"label" that was not chosen would clash after renaming.
    others = [c for c in frame.columns if c not in chosen and c not in ("text", "label")]
    result = frame[[text_column, label_column, *others]].rename(columns=chosen)
    return result.copy()


def _empty_rows(texts: pd.Series) -> list[str]:
    return [str(i + 1) for i, text in enumerate(texts.tolist()) if not text]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """What a source yielded: raw split frames plus how to describe it in the manifest."""

    kind: str
    splits: dict[str, pd.DataFrame]
    text_column: str
    label_column: str
    where: dict[str, Any] = field(default_factory=dict)


def _load_source(
    source: str, text_column: str, label_column: str, revision: str | None, log: Log
) -> _Source:
    path = Path(source).expanduser()
    if path.exists():
        where = {"path": str(path.resolve())}
        if path.is_file():
            log(f"reading {path} as the train split")
            frame = read_table(path)
            return _Source("file", {"train": frame}, text_column, label_column, where)
        acl_root = _find_aclimdb(path)
        if acl_root is not None:
            return _Source("aclimdb", _read_aclimdb(acl_root, log), "text", "label", where)
        splits = _read_split_folder(path, log)
        return _Source("parquet-folder", splits, text_column, label_column, where)
    if _looks_like_path(source):
        raise DataError(f"{source}: no such file or folder")
    splits = _load_hub(source, revision, log)
    return _Source("hub", splits, text_column, label_column, {"revision": revision})


def _looks_like_path(source: str) -> bool:
    """Whether a source that does not exist locally was meant as a path rather than a hub id."""
    # "Contains a path separator" cannot tell paths from hub ids on POSIX, as "owner/name" has a
    # "/" too; a hub id has at most one "/" and no odd characters, which the pattern checks.
    if source.startswith((".", "/", "~")) or "\\" in source or not _HUB_ID.match(source):
        return True
    if Path(source).suffix.lower() in TABLE_SUFFIXES + TEXT_SUFFIXES:
        return True
    # "data/imdb" where ./data exists is a mistyped local path, not an owner on the hub.
    owner, _, name = source.partition("/")
    return bool(name) and Path(owner).is_dir()


def _load_hub(dataset_id: str, revision: str | None, log: Log) -> dict[str, pd.DataFrame]:
    import datasets  # heavy; imported only when the hub is actually used

    log(
        f"downloading {dataset_id!r} from the Hugging Face hub"
        + (f" (revision {revision})" if revision else "")
    )
    try:
        loaded = datasets.load_dataset(dataset_id, revision=revision)
    except Exception as exc:  # network, auth, missing repo, ...: all mean "use a local copy"
        raise DataError(
            f"could not download {dataset_id!r} from the Hugging Face hub"
            f" ({type(exc).__name__}: {_one_line(exc)}); pass a local copy with --source PATH"
        ) from exc
    available = list(loaded.keys()) if isinstance(loaded, Mapping) else []
    if "train" not in available:
        raise DataError(
            f"hub dataset {dataset_id!r} has no 'train' split (it has: "
            f"{', '.join(available) or 'none'}); pass a dataset with train and test splits"
        )
    # "unsupervised" and any other extra splits carry no usable labels for us.
    return {name: loaded[name].to_pandas() for name in SPLITS if name in available}


def _find_aclimdb(folder: Path) -> Path | None:
    for root in (folder, folder / "aclImdb"):
        if (root / "train" / "pos").is_dir() and (root / "train" / "neg").is_dir():
            return root
    return None


def _read_aclimdb(root: Path, log: Log) -> dict[str, pd.DataFrame]:
    log(f"reading the aclImdb folder {root}")
    splits = {"train": _read_acl_split(root / "train")}
    if (root / "test" / "pos").is_dir() and (root / "test" / "neg").is_dir():
        splits["test"] = _read_acl_split(root / "test")
    return splits


def _read_acl_split(folder: Path) -> pd.DataFrame:
    texts: list[str] = []
    labels: list[int] = []
    ids: list[int | None] = []
    ratings: list[int | None] = []
    for label, name in enumerate(("neg", "pos")):
        for file in sorted((folder / name).glob("*.txt"), key=_acl_sort_key):
            match = _ACL_NAME.match(file.name)
            texts.append(_read_utf8(file))
            labels.append(label)
            ids.append(int(match["id"]) if match else None)
            ratings.append(int(match["rating"]) if match else None)
    # Nullable ints only when some file name did not follow <id>_<rating>.txt.
    int_dtype = "int64" if None not in ids else "Int64"
    return pd.DataFrame(
        {
            "text": pd.Series(texts, dtype="str"),
            "label": pd.Series(labels, dtype="int64"),
            "review_id": pd.Series(ids, dtype=int_dtype),
            "rating": pd.Series(ratings, dtype=int_dtype),
        }
    )


def _acl_sort_key(path: Path) -> tuple[int, str]:
    match = _ACL_NAME.match(path.name)
    return (int(match["id"]) if match else -1, path.name)


def _read_utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (bad byte at position {exc.start}); re-save it as UTF-8"
        ) from exc


def _read_split_folder(folder: Path, log: Log) -> dict[str, pd.DataFrame]:
    files: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for entry in sorted(folder.iterdir()):
        match = _SPLIT_FILE.match(entry.name.lower()) if entry.is_file() else None
        if match:
            files.setdefault(match["split"], []).append(entry)
        elif entry.is_file() and entry.suffix.lower() in TABLE_SUFFIXES:
            ignored.append(entry.name)
    if "train" not in files:
        raise DataError(
            f"{folder} holds no usable data: expected train.parquet (or .csv/.tsv/.jsonl/.json),"
            " optionally test.* and validation.*, or an aclImdb folder with train/pos and"
            " train/neg"
        )
    if ignored:
        log(f"ignoring {', '.join(ignored)} (not a train/validation/test file)")
    return {name: _read_split_files(name, files[name], log) for name in SPLITS if name in files}


def _read_split_files(split: str, paths: list[Path], log: Log) -> pd.DataFrame:
    suffixes = {p.suffix.lower() for p in paths}
    unsharded = [p for p in paths if p.stem.lower() == split]
    if len(suffixes) > 1 or (len(paths) > 1 and unsharded):
        raise DataError(
            f"more than one file for the {split} split ({', '.join(p.name for p in paths)});"
            " keep only one"
        )
    log(f"reading {', '.join(p.name for p in paths)} as the {split} split")
    frames = [read_table(p) for p in paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------------


def prepare(
    source: str = HUB_DATASET,
    output_dir: str | Path = "data/imdb",
    *,
    text_column: str = "text",
    label_column: str = "label",
    validation_fraction: float = 0.1,
    seed: int = 42,
    revision: str | None = None,
    force: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Prepare IMDB from ``source`` into ``output_dir`` and return the manifest.

    ``source`` is a hub dataset id, a folder of ``train.*``/``validation.*``/``test.*`` files, an
    (extracted) ``aclImdb`` folder or a single table used as the train split. Texts are cleaned,
    labels normalised to 0/1, exact duplicates inside train dropped, test reviews that also occur
    in train counted (never dropped), and a stratified, seeded validation split is carved from
    train unless the source has one. ``output_dir`` receives ``{train,validation,test}.parquet``
    and ``manifest.json``; an existing prepared folder is only replaced with ``force``, and then
    atomically, so a failure leaves the old data untouched.
    """
    source = str(source)  # a Path is a natural thing to pass from Python
    if not 0 < validation_fraction <= 0.5:
        raise DataError(
            f"validation fraction must be in (0, 0.5], got {validation_fraction};"
            " 0.1 is the usual choice"
        )
    output = Path(output_dir).expanduser().absolute()
    _check_output_dir(output, force)

    loaded = _load_source(source, text_column, label_column, revision, log)
    splits = {
        name: _tidy_split(frame, name, loaded.text_column, loaded.label_column, source, log)
        for name, frame in loaded.splits.items()
    }
    splits["train"], duplicates = _drop_duplicates(splits["train"], log)
    _require_both_labels(splits["train"], source)
    overlap = _report_overlap(splits, log)

    provided_validation = "validation" in splits
    if not provided_validation:
        splits["train"], splits["validation"] = _carve_validation(
            splits["train"], validation_fraction, seed
        )
    for name in SPLITS:
        if name in splits:
            log(f"{name}: {_describe(splits[name])}")

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "source": source,
        "source_kind": loaded.kind,
        **loaded.where,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "splits": {},
        "validation": {
            "fraction": None if provided_validation else validation_fraction,
            "seed": None if provided_validation else seed,
            "carved_from": None if provided_validation else "train",
        },
        "duplicates_dropped": duplicates,
        "test_train_overlap": overlap,
        "text_column": loaded.text_column,
        "label_column": loaded.label_column,
    }
    _write_atomically(output, splits, manifest)
    log(
        f"wrote {', '.join(f'{n}.parquet' for n in SPLITS if n in splits)} and {MANIFEST}"
        f" to {output}"
    )
    return manifest


def _check_output_dir(output: Path, force: bool) -> None:
    if not output.exists():
        return
    if not output.is_dir():
        raise DataError(f"{output} exists and is not a folder; choose another output folder")
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


def _tidy_split(
    frame: pd.DataFrame, split: str, text_column: str, label_column: str, source: str, log: Log
) -> pd.DataFrame:
    """Select and rename the columns, normalise labels, clean texts and drop empty ones."""
    where = f"{source} ({split} split)"
    if frame.empty:
        raise DataError(f"{where} holds no rows; it needs at least one review")
    frame = _select_columns(frame, text_column, label_column, where)
    frame["label"] = normalize_labels(frame["label"], column=label_column, source=where)
    frame["text"] = _clean_column(frame["text"])
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
        only = _LABEL_NAMES[present.pop()]
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


def _carve_validation(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # slow import; only needed here

    try:
        kept, carved = train_test_split(
            train, test_size=fraction, random_state=seed, shuffle=True, stratify=train["label"]
        )
    except ValueError as exc:
        raise DataError(
            f"cannot carve a stratified validation split of {fraction} from {len(train)} train"
            f" reviews ({_one_line(exc)}); use more data or a larger validation fraction"
        ) from exc
    # Keep source order inside each split: diffs stay readable and nothing depends on it.
    return kept.sort_index().reset_index(drop=True), carved.sort_index().reset_index(drop=True)


def _label_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["label"].value_counts()
    return {name: int(counts.get(label, 0)) for label, name in enumerate(_LABEL_NAMES)}


def _describe(frame: pd.DataFrame) -> str:
    counts = _label_counts(frame)
    share = counts["positive"] / len(frame) if len(frame) else 0.0
    return (
        f"{len(frame):,} reviews ({counts['negative']:,} negative, {counts['positive']:,}"
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
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
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


# --------------------------------------------------------------------------------------------
# Reading prepared data
# --------------------------------------------------------------------------------------------


def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    """Return the manifest of a prepared data folder; :class:`DataError` if it has none."""
    path = Path(data_dir).expanduser() / MANIFEST
    if not path.is_file():
        raise DataError(f"{data_dir} has no {MANIFEST}; run `imdb-sentiment download` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path} is corrupt ({_one_line(exc)}); run `imdb-sentiment download --force`"
        ) from exc
    if not isinstance(manifest, dict):
        raise DataError(f"{path} is not a manifest; run `imdb-sentiment download --force`")
    return manifest


def load_split(data_dir: str | Path, split: str) -> pd.DataFrame:
    """Return one prepared split (columns ``text``, ``label`` and any kept extras)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    folder = Path(data_dir).expanduser()
    if not folder.is_dir() or not any(folder.iterdir()):
        raise DataError(f"no prepared data in {data_dir}; run `imdb-sentiment download` first")
    path = folder / f"{split}.parquet"
    if not path.is_file():
        if split == "test":
            raise DataError(
                f"{data_dir} has no test split; the source had none"
                " — evaluate with --split validation or --file"
            )
        raise DataError(
            f"{data_dir} has no {split} split ({path.name} is missing);"
            " run `imdb-sentiment download --force` to prepare it again"
        )
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(
            f"{path} could not be read ({_one_line(exc)}); run `imdb-sentiment download --force`"
        ) from exc


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks so large files stay cheap."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
