"""Large review files a chunk at a time: ``predict --file`` reads and writes them in bounded memory.

:func:`count_texts` checks a file as :func:`~imdb_sentiment.data.files.read_texts_file` does, with
the same messages, holding one chunk at a time; :func:`iter_texts` then yields its reviews in
chunks of at most ``chunk_size``, in file order. :class:`TableWriter` appends rows to a ``.csv``,
``.jsonl`` or ``.parquet`` file built beside the target and moved into place only when every
chunk was written, so a failed or interrupted run leaves no half file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pandas as pd

from imdb_sentiment.atomic import current_umask
from imdb_sentiment.data.files import (
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    _check_readable_file,
    _first_char,
    _not_utf8,
    _require_columns,
    csv_options,
    is_missing,
    reading,
    shorten,
)
from imdb_sentiment.errors import DataError
from imdb_sentiment.text import clean_text

CHUNK_SIZE = 1024
"""Reviews per chunk: 32 batches of the default size, so length-sorting still pads little, while
the reviews, token ids and rows held at once stay a few megabytes."""

_TXT_BLOCK = 1 << 20  # bytes read at a time from a .txt file


def count_texts(
    path: str | Path, *, text_column: str = "text", chunk_size: int = CHUNK_SIZE
) -> int:
    """How many reviews ``path`` holds, after the checks and with the messages of
    :func:`~imdb_sentiment.data.files.read_texts_file` (every empty table row is listed)."""
    path = Path(path).expanduser()
    count = 0
    empty: list[str] = []
    for chunk in _raw_chunks(path, text_column, chunk_size):
        empty.extend(str(count + i + 1) for i, text in enumerate(chunk) if not clean_text(text))
        count += len(chunk)
    if len(empty) == count:  # also a file with no rows at all
        raise DataError(f"{path} holds no reviews; add at least one")
    if empty:
        raise _holes(path, text_column, empty)
    return count


def iter_texts(
    path: str | Path, *, text_column: str = "text", chunk_size: int = CHUNK_SIZE
) -> Iterator[list[str]]:
    """The reviews of ``path`` in file order, at most ``chunk_size`` at a time, uncleaned.

    Run :func:`count_texts` first for the whole file's checks; a table row without text found
    here (the file changed in between) still raises :class:`DataError` before it is yielded.
    """
    path = Path(path).expanduser()
    seen = 0
    for chunk in _raw_chunks(path, text_column, chunk_size):
        empty = [str(seen + i + 1) for i, text in enumerate(chunk) if not clean_text(text)]
        if empty:
            raise _holes(path, text_column, empty)
        seen += len(chunk)
        yield chunk


def _holes(path: Path, text_column: str, rows: list[str]) -> DataError:
    # Predictions line up with the table's rows, so a hole is an error rather than skipped.
    return DataError(
        f"{path}: column {text_column!r} is empty in row {shorten(rows)}"
        " (rows counted from 1); fill in or remove those rows"
    )


def _raw_chunks(path: Path, text_column: str, chunk_size: int) -> Iterator[list[str]]:
    """Chunks of texts as read ("" for a missing cell; blank .txt lines already skipped)."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        _check_readable_file(path)
        yield from batched(_txt_lines(path), chunk_size)
        return
    if suffix not in TABLE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r};"
            f" use one of {', '.join(TEXT_SUFFIXES + TABLE_SUFFIXES)}"
        )
    _check_readable_file(path)
    columns: list[str] = []
    found = False
    for frame in _guarded(path, suffix, _frames(path, suffix, text_column, chunk_size)):
        columns.extend(str(c) for c in frame.columns if str(c) not in columns)
        found = found or text_column in frame.columns
        if not len(frame):
            continue
        if text_column in frame.columns:
            texts = ["" if is_missing(v) else str(v) for v in frame[text_column].tolist()]
        else:
            # A JSON-lines chunk may lack a key that later records have: its rows are missing.
            texts = [""] * len(frame)
        # A JSON array comes whole; every other reader already gives chunk_size rows at most.
        for start in range(0, len(texts), chunk_size):
            yield texts[start : start + chunk_size]
    if not found:
        _require_columns(pd.DataFrame(columns=columns), {text_column: "--text-column"}, str(path))


def _frames(path: Path, suffix: str, text_column: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The table a chunk of rows at a time, read as :func:`~imdb_sentiment.data.files.read_table`
    reads it whole."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        # The columns pandas would show (index columns stored by pandas are not among them).
        yield parquet.schema_arrow.empty_table().to_pandas()
        if text_column in parquet.schema_arrow.names:
            for batch in parquet.iter_batches(batch_size=chunk_size, columns=[text_column]):
                yield pd.DataFrame({text_column: batch.column(0).to_pylist()})
    elif suffix in (".csv", ".tsv"):
        with pd.read_csv(path, chunksize=chunk_size, **csv_options(suffix)) as reader:
            yield from reader
    elif suffix == ".json" and _first_char(path) == "[":
        # One JSON array cannot be read in parts; such files are read whole.
        yield pd.read_json(path, encoding="utf-8", convert_dates=False)
    else:
        with pd.read_json(
            path, lines=True, encoding="utf-8", convert_dates=False, chunksize=chunk_size
        ) as reader:
            yield from reader


def _guarded(path: Path, suffix: str, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``frames``, with read_table's one-line messages for a file that cannot be read."""
    while True:
        with reading(path, suffix):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def _txt_lines(path: Path) -> Iterator[str]:
    """Non-blank lines of a UTF-8 text file, split as ``str.splitlines`` splits the whole text."""
    offset = 0
    rest = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(_TXT_BLOCK)
            data = rest + block
            # Cut after the last b"\n": no UTF-8 sequence holds that byte, and "\r\n" stays whole.
            cut = len(data) if not block else data.rfind(b"\n") + 1
            part, rest = data[:cut], data[cut:]
            try:
                text = part.decode("utf-8")
            except UnicodeDecodeError as exc:
                # The position in the whole file, as a single decode would report it.
                whole = UnicodeDecodeError(
                    exc.encoding, exc.object, offset + exc.start, offset + exc.end, exc.reason
                )
                raise _not_utf8(path, whole) from exc
            offset += cut
            yield from (line for line in text.splitlines() if clean_text(line))
            if not block:
                return


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of ``size`` (the last one shorter), holding one list at a time."""
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class TableWriter:
    """Rows appended to a ``.csv``, ``.jsonl`` (``.json``: JSON lines) or ``.parquet`` file.

    The rows go to a uniquely named file beside ``path``, moved over it when the ``with`` block
    ends without an error; on an error or interrupt it is deleted and ``path`` is untouched.
    The file holds what pandas' ``to_csv(index=False)``, ``to_json(orient="records",
    lines=True, force_ascii=False)`` or ``to_parquet(index=False)`` write for all rows at once
    (parquet in one row group per chunk). With ``overwrite=False`` a file that appeared at
    ``path`` meanwhile is kept and :class:`FileExistsError` raised.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.suffix = self.path.suffix.lower()
        self.rows = 0
        self._tmp: Path | None = None
        self._handle: IO[str] | None = None
        self._parquet: Any = None

    def __enter__(self) -> TableWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self._tmp = Path(name)
        if self.suffix == ".parquet":
            os.close(fd)
        else:
            self._handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows (every chunk has the same columns)."""
        with _naming(self.path):
            if self.suffix == ".parquet":
                self._write_parquet(frame)
            elif self.suffix == ".csv":
                assert self._handle is not None
                frame.to_csv(self._handle, index=False, header=self.rows == 0)
            else:
                assert self._handle is not None
                frame.to_json(self._handle, orient="records", lines=True, force_ascii=False)
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._parquet = pq.ParquetWriter(self._tmp, table.schema)
        else:
            # The first chunk's schema: a later chunk cannot drift to other column types.
            table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
        self._parquet.write_table(table)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tmp is not None
        try:
            with _naming(self.path):
                self._close()
                if exc_type is None:
                    self._tmp.chmod(0o666 & ~current_umask())
                    self._publish(self._tmp)
        finally:
            self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()

    def _publish(self, tmp: Path) -> None:
        if self.overwrite:
            tmp.replace(self.path)
            return
        try:
            # A hard link never replaces a file that appeared since the run began.
            os.link(tmp, self.path)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(self.path)) from None
        except OSError:  # file systems without hard links: the rename is the best left
            if self.path.exists():
                raise FileExistsError(
                    errno.EEXIST, os.strerror(errno.EEXIST), str(self.path)
                ) from None
            tmp.replace(self.path)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an :class:`OSError` that lost its file name (pandas' writers drop it) with the
    target's, so the one-line message says which file."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
