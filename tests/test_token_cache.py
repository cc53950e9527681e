"""The token cache: reviews tokenized once, read back only for the very same key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_frame

from imdb_sentiment.config import Config, resolve
from imdb_sentiment.modeling.loading import load_tokenizer
from imdb_sentiment.modeling.tokenization import encode
from imdb_sentiment.training import dataset
from imdb_sentiment.training.dataset import CACHE_DIR, encoded_reviews


@pytest.fixture()
def data_dir(tmp_path: Path, prepared_data: Path) -> Path:
    """A prepared folder of this test's own, so caches never leak between tests."""
    out = tmp_path / "imdb"
    shutil.copytree(prepared_data, out, ignore=shutil.ignore_patterns(".cache"))
    return out


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_frame(30, seed=7)


def _cfg(tiny_model: Path, data_dir: Path, **overrides: object) -> Config:
    return resolve(
        overrides={
            "model.name": str(tiny_model),
            "data.dir": str(data_dir),
            "model.max_length": 24,
            "model.truncation": "head+tail",
            **overrides,
        }
    )


def _files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / CACHE_DIR).glob("*.npz"))


def test_second_read_is_a_hit_with_the_same_ids(
    tiny_model: Path, data_dir: Path, frame: pd.DataFrame
) -> None:
    tokenizer, cfg = load_tokenizer(str(tiny_model)), _cfg(tiny_model, data_dir)
    first = encoded_reviews(tokenizer, frame, cfg)
    second = encoded_reviews(tokenizer, frame, cfg)
    assert (first.cache, second.cache) == ("miss", "hit")
    # A call with truncation and padding between (the tokenizer keeps the last call's
    # settings) does not change what the tokenizer is.
    tokenizer(["a review"], truncation=True, max_length=8, padding="max_length")
    assert encoded_reviews(tokenizer, frame, cfg).cache == "hit"
    assert len(_files(data_dir)) == 1
    expected = encode(tokenizer, frame["text"].tolist(), 24, "head+tail", 6).input_ids
    assert second.input_ids == first.input_ids == expected
    assert second[3] == {
        "input_ids": expected[3],
        "attention_mask": [1] * len(expected[3]),
        "labels": int(frame["label"].iloc[3]),
    }


@pytest.mark.parametrize(
    "change", ["reviews", "max_length", "truncation", "head_tokens", "tokenizer", "code"]
)
def test_any_change_to_the_key_is_a_miss(
    tiny_model: Path,
    data_dir: Path,
    frame: pd.DataFrame,
    change: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokenizer, cfg = load_tokenizer(str(tiny_model)), _cfg(tiny_model, data_dir)
    assert encoded_reviews(tokenizer, frame, cfg).cache == "miss"
    changed = frame.copy()
    if change == "reviews":
        changed.loc[0, "text"] = changed.loc[0, "text"] + " boring"
    elif change == "max_length":
        cfg = _cfg(tiny_model, data_dir, **{"model.max_length": 32})
    elif change == "truncation":
        cfg = _cfg(tiny_model, data_dir, **{"model.truncation": "tail"})
    elif change == "head_tokens":
        cfg = _cfg(tiny_model, data_dir, **{"model.head_tokens": 10})
    elif change == "tokenizer":
        tokenizer = load_tokenizer(str(tiny_model))
        tokenizer.add_tokens(["cinematography"])
    else:  # the cleaning or cutting code changed
        monkeypatch.setattr(dataset, "_code_digest", lambda: "another version")
    again = encoded_reviews(tokenizer, changed, cfg)
    assert again.cache == "miss"
    assert len(_files(data_dir)) == 2  # a new file: the first key's file is never reused


def test_a_damaged_or_foreign_file_is_rebuilt(
    tiny_model: Path, data_dir: Path, frame: pd.DataFrame
) -> None:
    tokenizer, cfg = load_tokenizer(str(tiny_model)), _cfg(tiny_model, data_dir)
    expected = encoded_reviews(tokenizer, frame, cfg).input_ids
    [path] = _files(data_dir)
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    rebuilt = encoded_reviews(tokenizer, frame, cfg)
    assert rebuilt.cache == "miss" and rebuilt.input_ids == expected
    assert encoded_reviews(tokenizer, frame, cfg).cache == "hit"
    # Another key's (valid) file under this key's name is not read either.
    other = encoded_reviews(tokenizer, frame.iloc[:10], cfg)
    other_path = next(p for p in _files(data_dir) if p != path)
    shutil.copyfile(other_path, path)
    assert other.cache == "miss"
    assert encoded_reviews(tokenizer, frame, cfg).input_ids == expected


def test_off_unprepared_or_unwritable_folders_tokenize_without_a_cache(
    tiny_model: Path,
    data_dir: Path,
    frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokenizer = load_tokenizer(str(tiny_model))
    off = _cfg(tiny_model, data_dir, **{"data.token_cache": "false"})
    assert encoded_reviews(tokenizer, frame, off).cache == "off"
    assert not (data_dir / ".cache").exists()
    bare = tmp_path / "not-prepared"
    assert encoded_reviews(tokenizer, frame, _cfg(tiny_model, bare)).cache == "off"
    assert not bare.exists()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(dataset.np, "savez", refuse)
    unwritable = encoded_reviews(tokenizer, frame, _cfg(tiny_model, data_dir))
    assert unwritable.cache == "unwritable" and len(unwritable) == len(frame)
    assert not list((data_dir / CACHE_DIR).iterdir())  # no temporary file left behind
