"""Tables of reviews on disk: reading them, normalising their labels, hashing them.

``read_texts_file`` (for ``predict --file`` and export calibration) and ``read_labelled_file``
(for ``eval --file``) are the general file readers; data preparation reads its sources with
:func:`read_table` too, so every entry point accepts the same formats with the same messages.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.errors import DataError
from imdb_sentiment.text import clean_text

TABLE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)

_NEGATIVE = frozenset({"neg", "negative", "0", "false"})
_POSITIVE = frozenset({"pos", "positive", "1", "true"})
_MAX_SHOWN = 5


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold the review text and its label."""

    text: str = "text"
    label: str = "label"


# --------------------------------------------------------------------------------------------
# Labels and texts
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
            f"{prefix}column {column!r} has unknown label values: {shorten(offenders)}"
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
    if is_missing(value):
        return "<missing>"
    # A label column with a gap is read as floats; show 3.0 as the 3 that was written.
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    return repr(value)


def shorten(items: list[str]) -> str:
    """The first few items joined with commas, and how many more were left out."""
    shown = ", ".join(items[:_MAX_SHOWN])
    if len(items) > _MAX_SHOWN:
        shown += f" and {len(items) - _MAX_SHOWN} more"
    return shown


def clean_column(values: pd.Series) -> pd.Series:
    """Clean every text in a column; missing values become "" so callers can spot them."""
    cleaned = ["" if is_missing(value) else clean_text(str(value)) for value in values.tolist()]
    return pd.Series(cleaned, index=values.index, dtype="str", name=values.name)


def is_missing(value: object) -> bool:
    """Whether a cell read from a table is empty (``None`` or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def one_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, shortened, for a one-line error."""
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


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
    with reading(path, suffix):
        return _read_by_suffix(path, suffix)


@contextmanager
def reading(path: Path, suffix: str) -> Iterator[None]:
    """Turn what reading a table file raises into one-line :class:`DataError` messages."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many unrelated types for a corrupt file
        raise DataError(
            f"{path} could not be read as {suffix[1:]} ({one_line(exc)}); check the file"
        ) from exc


def _read_by_suffix(path: Path, suffix: str) -> pd.DataFrame:
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, **csv_options(suffix))
    return _read_json(path, suffix)


def csv_options(suffix: str) -> dict[str, Any]:
    """``pandas.read_csv`` options for a .csv or .tsv file, whole or in chunks."""
    # Only truly empty cells count as missing: a review reading "NA" or "null" is text.
    return {
        "sep": "\t" if suffix == ".tsv" else ",",
        "encoding": "utf-8",
        "keep_default_na": False,
        "na_values": [""],
    }


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


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(
        f"{path} is not valid UTF-8 (bad byte at position {exc.start}); re-save it as UTF-8"
    )


def read_utf8(path: Path) -> str:
    """A text file's content; :class:`DataError` naming the file when it is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc


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
    frame = select_columns(frame, text_column, label_column, str(path))
    frame["label"] = normalize_labels(frame["label"], column=label_column, source=str(path))
    frame["text"] = clean_column(frame["text"])
    empty = [str(i + 1) for i, text in enumerate(frame["text"].tolist()) if not text]
    if empty:
        raise DataError(
            f"{path}: column {text_column!r} is empty in row {shorten(empty)}"
            " (rows counted from 1); fill in or remove those rows"
        )
    return frame.reset_index(drop=True)


def read_texts_file(path: str | Path, *, text_column: str = "text") -> list[str]:
    """Read the reviews to classify (for ``predict --file``), uncleaned.

    A ``.txt`` file holds one review per line (blank lines skipped); a ``.csv``, ``.tsv``,
    ``.jsonl``, ``.json`` or ``.parquet`` file holds them in ``text_column``. A missing, empty,
    non-UTF-8 file, a missing column or a table row without text raises :class:`DataError`.
    The texts are cleaned where they are tokenized (:mod:`imdb_sentiment.modeling.tokenization`).
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        _check_readable_file(path)
        texts = [line for line in read_utf8(path).splitlines() if clean_text(line)]
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


def _read_text_column(path: Path, text_column: str) -> list[str]:
    frame = read_table(path)
    _require_columns(frame, {text_column: "--text-column"}, str(path))
    texts = ["" if is_missing(v) else str(v) for v in frame[text_column].tolist()]
    # Empty as the model would read it: invisible characters or "<br />" alone are no review.
    empty = [str(i + 1) for i, text in enumerate(texts) if not clean_text(text)]
    if len(empty) == len(texts):
        return []
    # Predictions line up with the table's rows, so a hole is an error rather than skipped.
    if empty:
        raise DataError(
            f"{path}: column {text_column!r} is empty in row {shorten(empty)}"
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


def select_columns(
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


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 of a file, read in chunks so large files stay cheap."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
