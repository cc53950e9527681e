"""The splits of a prepared data folder: reading them back, carving validation, subsampling.

A prepared folder holds ``{train,validation,test}.parquet`` and a ``manifest.json``
(:mod:`imdb_sentiment.data.prepare` writes them). Validation is carved from train, stratified and
seeded; the test split is only ever read by evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.data.files import is_missing, one_line, shorten
from imdb_sentiment.errors import DataError

SPLITS = ("train", "validation", "test")
MANIFEST = "manifest.json"


def load_manifest(data_dir: str | Path) -> dict[str, Any]:
    """Return the manifest of a prepared data folder; :class:`DataError` if it has none."""
    path = Path(data_dir).expanduser() / MANIFEST
    if not path.is_file():
        raise DataError(f"{data_dir} has no {MANIFEST}; run `imdb-sentiment download` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path} is corrupt ({one_line(exc)}); run `imdb-sentiment download --force`"
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
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(
            f"{path} could not be read ({one_line(exc)}); run `imdb-sentiment download --force`"
        ) from exc
    return _checked(frame, path)


def _checked(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The split, if it has a ``text`` column and a ``label`` column of 0s and 1s.

    A hand-edited or foreign parquet file would otherwise get past loading and fail inside
    Trainer, after the run directory was claimed.
    """
    redo = "prepare it with `imdb-sentiment download`"
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing:
        present = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataError(
            f"{path} has no {' or '.join(repr(c) for c in missing)} column "
            f"(columns present: {present}); {redo}"
        )
    labels = frame["label"]
    bad = ~labels.isin([0, 1]) | labels.isna()
    if bad.any():
        shown = shorten(sorted({_shown(v) for v in labels[bad].tolist()}))
        raise DataError(
            f"{path}: column 'label' must hold 0 (negative) or 1 (positive), "
            f"found {shown} in {int(bad.sum()):,} rows; {redo}"
        )
    frame["label"] = labels.astype("int64")
    return frame


def _shown(value: object) -> str:
    return "<missing>" if is_missing(value) else repr(value)


def carve_validation(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``train`` into (kept, validation), stratified by label and seeded."""
    from sklearn.model_selection import train_test_split  # slow import; only needed here

    try:
        kept, carved = train_test_split(
            train, test_size=fraction, random_state=seed, shuffle=True, stratify=train["label"]
        )
    except ValueError as exc:
        raise DataError(
            f"cannot carve a stratified validation split of {fraction} from {len(train)} train"
            f" reviews ({one_line(exc)}); use more data or a larger validation fraction"
        ) from exc
    # Keep source order inside each split: diffs stay readable and nothing depends on it.
    return kept.sort_index().reset_index(drop=True), carved.sort_index().reset_index(drop=True)


def sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A stratified, seeded subset of ``n`` rows (all rows when ``n`` is None or too big)."""
    if n is None or n >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split

    stratify = frame["label"] if frame["label"].value_counts().min() >= 2 and n >= 2 else None
    subset, _ = train_test_split(frame, train_size=n, stratify=stratify, random_state=seed)
    return subset
