"""Where IMDB comes from: the Hugging Face hub, an ``aclImdb`` folder, split files, one table.

:func:`load_source` reads any of them into raw split frames (uncleaned, columns as found) for
:func:`imdb_sentiment.data.prepare.prepare` to tidy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.data.files import (
    TABLE_SUFFIXES,
    TEXT_SUFFIXES,
    one_line,
    read_table,
    read_utf8,
)
from imdb_sentiment.data.splits import SPLITS
from imdb_sentiment.errors import DataError

HUB_DATASET = "stanfordnlp/imdb"

# Hub ids are "name" or "owner/name"; anything else that does not exist locally is a bad path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
# "train.parquet", or hub-style shards such as "train-00000-of-00002.parquet".
_SPLIT_FILE = re.compile(
    r"^(?P<split>train|validation|test)(-\d+-of-\d+)?\.(parquet|csv|tsv|jsonl|json)$"
)
_ACL_NAME = re.compile(r"^(?P<id>\d+)_(?P<rating>\d+)\.txt$")

Log = Callable[[str], None]


@dataclass
class Source:
    """What a source yielded: raw split frames plus how to describe it in the manifest."""

    kind: str
    splits: dict[str, pd.DataFrame]
    text_column: str
    label_column: str
    where: dict[str, Any] = field(default_factory=dict)


def load_source(
    source: str, text_column: str, label_column: str, revision: str | None, log: Log
) -> Source:
    """Read ``source`` (a path, or else a hub dataset id) into raw split frames."""
    path = Path(source).expanduser()
    if path.exists():
        where = {"path": str(path.resolve())}
        if path.is_file():
            log(f"reading {path} as the train split")
            frame = read_table(path)
            return Source("file", {"train": frame}, text_column, label_column, where)
        acl_root = _find_aclimdb(path)
        if acl_root is not None:
            return Source("aclimdb", _read_aclimdb(acl_root, log), "text", "label", where)
        splits = _read_split_folder(path, log)
        return Source("parquet-folder", splits, text_column, label_column, where)
    if looks_like_path(source):
        raise DataError(f"{source}: no such file or folder")
    splits = _load_hub(source, revision, log)
    return Source("hub", splits, text_column, label_column, {"revision": revision})


def looks_like_path(source: str) -> bool:
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
            f" ({type(exc).__name__}: {one_line(exc)}); pass a local copy with --source PATH"
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
            texts.append(read_utf8(file))
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
