"""Tests for imdb_sentiment.data: sources, cleaning, splits, manifest and error messages.

Everything runs offline on small synthetic frames; the hub path is exercised through a
monkeypatched ``datasets.load_dataset``. One ``realdata`` test prepares the shared IMDB copy.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from imdb_sentiment.data import prepare as prepare_mod
from imdb_sentiment.data.files import (
    Columns,
    file_sha256,
    normalize_labels,
    read_labelled_file,
    read_table,
    read_texts_file,
)
from imdb_sentiment.data.prepare import prepare
from imdb_sentiment.data.sources import HUB_DATASET
from imdb_sentiment.data.splits import MANIFEST, SPLITS, load_manifest, load_split, sample
from imdb_sentiment.errors import ConfigError, DataError
from imdb_sentiment.text import clean_text

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def reviews(n_neg: int, n_pos: int, prefix: str = "review") -> pd.DataFrame:
    """A frame of distinct reviews, negatives first, with a rating column to check it is kept."""
    rows = [
        {
            "text": f"{prefix} {i} was {'awful' if i < n_neg else 'great'}",
            "label": 0 if i < n_neg else 1,
            "rating": 2 if i < n_neg else 9,
        }
        for i in range(n_neg + n_pos)
    ]
    return pd.DataFrame(rows)


class LogSink(list[str]):
    """Collects prepare's log lines so tests can look for a phrase."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def has(self, phrase: str) -> bool:
        return any(phrase in line for line in self)


def run_prepare(source: str | Path, out: Path, **kwargs: Any) -> tuple[dict[str, Any], LogSink]:
    sink = LogSink()
    manifest = prepare(str(source), out, log=sink, **kwargs)
    return manifest, sink


def folder_with(tmp_path: Path, **splits: pd.DataFrame) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name, frame in splits.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def write_acl_review(
    root: Path, split: str, polarity: str, review_id: int, rating: int, text: str
) -> None:
    folder = root / split / polarity
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{review_id}_{rating}.txt").write_text(text, encoding="utf-8")


def make_aclimdb(parent: Path) -> Path:
    root = parent / "aclImdb"
    for split in ("train", "test"):
        for i in range(10):
            write_acl_review(root, split, "neg", i, 1 + i % 4, f"{split} bad film {i}<br />meh")
            write_acl_review(root, split, "pos", i, 7 + i % 4, f"{split} good film {i}")
    # Unlabelled reviews live next to pos/neg in the real archive and must be ignored.
    write_acl_review(root, "train", "unsup", 0, 0, "unlabelled")
    return root


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------------------------
# clean_text and normalize_labels
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Great.<br /><br />Loved it", "Great. Loved it"),
        ("a<br/>b", "a b"),
        ("a<br>b", "a b"),
        ("a<BR />b<Br>c", "a b c"),
        ("  spaced \t out\n\nlines  ", "spaced out lines"),
        ("<br /> only a break <br />", "only a break"),
        ("", ""),
    ],
)
def test_clean_text(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_normalize_labels_accepts_every_spelling() -> None:
    values = pd.Series(
        [
            0,
            1,
            0.0,
            1.0,
            "0",
            "1",
            True,
            False,
            "neg",
            "POS",
            " Negative ",
            "positive",
            "false",
            "TRUE",
        ],
        index=range(10, 24),
    )
    result = normalize_labels(values)
    assert result.dtype == "int64"
    assert result.tolist() == [0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1]
    assert result.index.tolist() == list(range(10, 24))


def test_normalize_labels_typed_columns() -> None:
    assert normalize_labels(pd.Series([1, 0, 1], dtype="int8")).tolist() == [1, 0, 1]
    assert normalize_labels(pd.Series([True, False])).tolist() == [1, 0]


def test_normalize_labels_lists_offenders() -> None:
    values = pd.Series(["pos", "meh", 3, "meh", 1])
    with pytest.raises(DataError) as info:
        normalize_labels(values, column="label", source="x.csv")
    assert str(info.value) == (
        "x.csv: column 'label' has unknown label values: 'meh', 3"
        " (expected 0/1 or negative/positive)"
    )


def test_normalize_labels_rejects_missing_and_caps_the_list() -> None:
    values = pd.Series([math.nan, 2, 3, 4, 5, 6, 7, 0.5])
    with pytest.raises(
        DataError,
        match=r"^column 'stars' has unknown label values: <missing>, "
        r"2, 3, 4, 5 and 3 more \(expected",
    ):
        normalize_labels(values, column="stars")


# --------------------------------------------------------------------------------------------
# read_table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".jsonl", ".json"])
def test_read_table_by_suffix(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"text": ['a, "quoted" review', "NA"], "label": [0, 1]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix in (".csv", ".tsv"):
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    result = read_table(path)
    # "NA" is a review, not a missing value.
    assert result["text"].tolist() == ['a, "quoted" review', "NA"]
    assert result["label"].tolist() == [0, 1]


def test_read_table_json_array(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"text": "x", "label": 1}]), encoding="utf-8")
    assert read_table(path).to_dict("records") == [{"text": "x", "label": 1}]


def test_read_table_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 au lait,1\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv is not valid UTF-8"):
        read_table(path)


def test_read_table_non_utf8_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"text": "caf\xe9", "label": 1}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.jsonl is not valid UTF-8"):
        read_table(path)


def test_read_table_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet could not be read as parquet"):
        read_table(path)


def test_read_table_corrupt_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl could not be read as jsonl"):
        read_table(path)


def test_read_table_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "reviews.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(
        DataError,
        match=r"unsupported file type '\.xlsx'; use one of \.parquet, "
        r"\.csv, \.tsv, \.jsonl, \.json",
    ):
        read_table(path)


def test_read_table_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        read_table(tmp_path / "empty.csv")


# --------------------------------------------------------------------------------------------
# read_labelled_file (eval --file)
# --------------------------------------------------------------------------------------------


def test_read_labelled_file_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    pd.DataFrame(
        {
            "review": ["Fine<br />film", "Dull  film"],
            "sentiment": ["Positive", "neg"],
            "rating": [8, 3],
        }
    ).to_csv(path, index=False)
    frame = read_labelled_file(path, text_column="review", label_column="sentiment")
    assert list(frame.columns) == ["text", "label", "rating"]
    assert frame["text"].tolist() == ["Fine film", "Dull film"]
    assert frame["label"].tolist() == [1, 0]
    assert frame["rating"].tolist() == [8, 3]


def test_read_labelled_file_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    pd.DataFrame({"review": ["x"], "label": [1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"has no column 'text' \(columns present: review, label\)"):
        read_labelled_file(path)


def test_read_labelled_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labelled\.csv holds no rows"):
        read_labelled_file(path)


def test_read_labelled_file_empty_text_names_row(tmp_path: Path) -> None:
    path = tmp_path / "labelled.jsonl"
    pd.DataFrame({"text": ["ok", "<br />  ", "fine"], "label": [1, 0, 1]}).to_json(
        path, orient="records", lines=True
    )
    with pytest.raises(DataError, match=r"column 'text' is empty in row 2 "):
        read_labelled_file(path)


def test_read_labelled_file_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["pos", "meh"]}).to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"labelled\.csv: column 'label' has unknown label values: "
        r"'meh'",
    ):
        read_labelled_file(path)


# --------------------------------------------------------------------------------------------
# read_texts_file (predict --file)
# --------------------------------------------------------------------------------------------


def test_read_texts_file_txt(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    path.write_text("Great<br />film\n\n   \r\nAwful film\r\n", encoding="utf-8")
    # Raw, uncleaned: the predictor owns cleaning.
    assert read_texts_file(path) == ["Great<br />film", "Awful film"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_read_texts_file_tables(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame({"id": [1, 2], "body": ["first review", "second<br />review"]})
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    assert read_texts_file(path, text_column="body") == ["first review", "second<br />review"]


def test_read_texts_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.txt: no such file"):
        read_texts_file(tmp_path / "missing.txt")

    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank\.txt holds no reviews"):
        read_texts_file(blank)

    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        read_texts_file(empty)

    latin = tmp_path / "latin.txt"
    latin.write_bytes("tr\xe8s bien\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt is not valid UTF-8"):
        read_texts_file(latin)

    table = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["x"]}).to_csv(table, index=False)
    with pytest.raises(DataError, match=r"has no column 'text' \(columns present: review\)"):
        read_texts_file(table)

    with pytest.raises(DataError, match=r"unsupported file type '\.docx'.*\.txt"):
        read_texts_file(tmp_path / "reviews.docx")


def test_read_texts_file_table_holes(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text("text\nfirst\n\nthird\n", encoding="utf-8")
    # pandas skips the blank line itself; a quoted empty cell is a real hole.
    assert read_texts_file(path) == ["first", "third"]
    path.write_text('text,id\nfirst,1\n"",2\nthird,3\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"column 'text' is empty in row 2 "):
        read_texts_file(path)
    path.write_text('text,id\n"",1\n', encoding="utf-8")
    with pytest.raises(DataError, match="holds no reviews"):
        read_texts_file(path)


# --------------------------------------------------------------------------------------------
# prepare: source kinds
# --------------------------------------------------------------------------------------------


def test_prepare_parquet_folder(tmp_path: Path) -> None:
    train = reviews(30, 30)
    test = reviews(5, 5, prefix="test")
    unsup = pd.DataFrame({"text": ["no label here"], "label": [-1], "rating": [0]})
    source = folder_with(tmp_path, train=train, test=test, unsup=unsup)
    out = tmp_path / "out"

    manifest, log = run_prepare(source, out)

    assert manifest["source_kind"] == "parquet-folder"
    assert manifest["path"] == str(source.resolve())
    assert "revision" not in manifest
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]
    train_out, val_out = load_split(out, "train"), load_split(out, "validation")
    assert len(train_out) + len(val_out) == 60
    assert list(train_out.columns) == ["text", "label", "rating"]
    pd.testing.assert_frame_equal(load_split(out, "test"), test)
    assert log.has("ignoring unsup.parquet")


def test_prepare_folder_validation_file_is_used(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20), validation=reviews(3, 4, prefix="val"))
    manifest, _ = run_prepare(source, tmp_path / "out")
    assert manifest["validation"] == {"fraction": None, "seed": None, "carved_from": None}
    assert manifest["splits"]["train"]["rows"] == 40
    assert manifest["splits"]["validation"]["rows"] == 7
    assert "test" not in manifest["splits"]
    assert not (tmp_path / "out" / "test.parquet").exists()


@pytest.mark.parametrize("point_at", ["aclImdb", "parent"])
def test_prepare_aclimdb(tmp_path: Path, point_at: str) -> None:
    root = make_aclimdb(tmp_path / "download")
    source = root if point_at == "aclImdb" else root.parent
    out = tmp_path / "out"

    manifest, _ = run_prepare(source, out, validation_fraction=0.2)

    assert manifest["source_kind"] == "aclimdb"
    assert manifest["splits"]["train"]["rows"] == 16
    assert manifest["splits"]["validation"]["rows"] == 4
    test = load_split(out, "test")
    assert list(test.columns) == ["text", "label", "review_id", "rating"]
    assert len(test) == 20
    assert test["label"].tolist() == [0] * 10 + [1] * 10
    first = test.iloc[0]
    assert (first["text"], first["review_id"], first["rating"]) == ("test bad film 0 meh", 0, 1)
    assert set(test.loc[test["label"] == 1, "rating"]) <= {7, 8, 9, 10}
    train = pd.concat([load_split(out, "train"), load_split(out, "validation")])
    assert "unlabelled" not in set(train["text"])


def test_prepare_csv_custom_columns_and_string_labels(tmp_path: Path) -> None:
    frame = reviews(10, 10).rename(columns={"text": "review", "label": "sentiment"})
    frame["sentiment"] = frame["sentiment"].map({0: "NEG", 1: "positive"})
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)

    manifest, _ = run_prepare(
        path,
        tmp_path / "out",
        columns=Columns(text="review", label="sentiment"),
        validation_fraction=0.2,
    )

    assert manifest["source_kind"] == "file"
    assert (manifest["text_column"], manifest["label_column"]) == ("review", "sentiment")
    train = load_split(tmp_path / "out", "train")
    assert list(train.columns) == ["text", "label", "rating"]
    assert set(train["label"]) == {0, 1}
    assert manifest["splits"]["validation"]["labels"] == {"negative": 2, "positive": 2}


def test_prepare_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    reviews(10, 10).to_json(path, orient="records", lines=True)
    manifest, _ = run_prepare(path, tmp_path / "out")
    assert manifest["source_kind"] == "file"
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["validation"]["rows"] == 20


def fake_hub(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    import datasets

    def load_dataset(path: str, **kwargs: Any) -> datasets.DatasetDict:
        calls.append({"path": path, **kwargs})
        return datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_pandas(reviews(20, 20)[["text", "label"]]),
                "test": datasets.Dataset.from_pandas(reviews(5, 5, "t")[["text", "label"]]),
                "unsupervised": datasets.Dataset.from_dict({"text": ["u"], "label": [-1]}),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def test_prepare_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fake_hub(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)

    manifest, _ = run_prepare(HUB_DATASET, tmp_path / "out", revision="abc123")

    assert calls == [{"path": HUB_DATASET, "revision": "abc123"}]
    assert manifest["source_kind"] == "hub"
    assert manifest["source"] == HUB_DATASET
    assert manifest["revision"] == "abc123"
    assert "path" not in manifest
    assert manifest["splits"]["test"]["rows"] == 10
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["validation"]["rows"] == 40


def test_prepare_defaults_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fake_hub(monkeypatch, calls)
    monkeypatch.chdir(tmp_path)
    prepare(output_dir="data/imdb", log=LogSink())
    assert calls == [{"path": "stanfordnlp/imdb", "revision": None}]
    assert (tmp_path / "data" / "imdb" / MANIFEST).is_file()


def test_prepare_hub_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(path: str, **kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach 'stanfordnlp/imdb' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        run_prepare(HUB_DATASET, tmp_path / "out")
    message = str(info.value)
    assert message == (
        "could not download 'stanfordnlp/imdb' from the Hugging Face hub (ConnectionError: "
        "Couldn't reach 'stanfordnlp/imdb' on the Hub); pass a local copy with --source PATH"
    )
    assert not (tmp_path / "out").exists()


def test_prepare_hub_without_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda path, **kw: datasets.DatasetDict(
            {"test": datasets.Dataset.from_dict({"text": ["a"], "label": [1]})}
        ),
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"has no 'train' split \(it has: test\)"):
        run_prepare("someone/reviews", tmp_path / "out")


# --------------------------------------------------------------------------------------------
# prepare: cleaning, duplicates, overlap, splitting, manifest
# --------------------------------------------------------------------------------------------


def test_prepare_cleans_text_and_drops_empty_rows(tmp_path: Path) -> None:
    train = reviews(20, 20)
    train.loc[0, "text"] = "Bad.<br /><br />Really   bad."
    train.loc[1, "text"] = " <br /> "
    train.loc[2, "text"] = None
    source = folder_with(tmp_path, train=train)

    manifest, log = run_prepare(source, tmp_path / "out")

    everything = pd.concat([load_split(tmp_path / "out", s) for s in ("train", "validation")])
    assert "Bad. Really bad." in set(everything["text"])
    assert not everything["text"].str.contains("<br", case=False).any()
    assert len(everything) == 38
    assert log.has("train: dropped 2 reviews with empty text")
    assert manifest["duplicates_dropped"] == 0


def test_prepare_drops_duplicates_in_train(tmp_path: Path) -> None:
    train = reviews(20, 20)
    # Same review after cleaning, twice over: both copies go, the first occurrence stays.
    extra = pd.DataFrame(
        {
            "text": ["review 3 was  awful", "review 3 was<br/>awful"],
            "label": [0, 0],
            "rating": [4, 1],
        }
    )
    source = folder_with(tmp_path, train=pd.concat([train, extra], ignore_index=True))

    manifest, log = run_prepare(source, tmp_path / "out")

    assert manifest["duplicates_dropped"] == 2
    assert log.has("dropped 2 exact duplicate reviews")
    everything = pd.concat([load_split(tmp_path / "out", s) for s in ("train", "validation")])
    assert len(everything) == 40
    kept = everything[everything["text"] == "review 3 was awful"]
    assert kept["rating"].tolist() == [2]


def test_prepare_reports_test_train_overlap_but_keeps_test(tmp_path: Path) -> None:
    train = reviews(20, 20)
    test = pd.concat([reviews(3, 3, "t"), train.iloc[[0, 25]]], ignore_index=True)
    assert test.loc[6, "text"] == "review 0 was awful"
    test.loc[6, "text"] = "review<br />0 was awful"
    source = folder_with(tmp_path, train=train, test=test)

    manifest, log = run_prepare(source, tmp_path / "out")

    assert manifest["test_train_overlap"] == 2
    assert manifest["splits"]["test"]["rows"] == 8
    assert len(load_split(tmp_path / "out", "test")) == 8
    assert log.has("test: 2 reviews also occur in train")


def test_prepare_stratified_split(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(60, 100))
    out = tmp_path / "out"

    manifest, _ = run_prepare(source, out, validation_fraction=0.2, seed=7)

    assert manifest["validation"] == {"fraction": 0.2, "seed": 7, "carved_from": "train"}
    assert manifest["splits"]["validation"]["labels"] == {"negative": 12, "positive": 20}
    assert manifest["splits"]["train"]["labels"] == {"negative": 48, "positive": 80}
    train, val = load_split(out, "train"), load_split(out, "validation")
    assert not set(train["text"]) & set(val["text"])


def test_prepare_is_deterministic_by_seed(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(50, 50))
    first, _ = run_prepare(source, tmp_path / "a", seed=1)
    again, _ = run_prepare(source, tmp_path / "b", seed=1)
    other, _ = run_prepare(source, tmp_path / "c", seed=2)

    for split in ("train", "validation"):
        assert first["splits"][split]["sha256"] == again["splits"][split]["sha256"]
        pd.testing.assert_frame_equal(
            load_split(tmp_path / "a", split), load_split(tmp_path / "b", split)
        )
    assert set(load_split(tmp_path / "a", "validation")["text"]) != set(
        load_split(tmp_path / "c", "validation")["text"]
    )
    assert other["splits"]["validation"]["rows"] == first["splits"]["validation"]["rows"]


def test_prepare_manifest(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 30), test=reviews(4, 6, "t"))
    out = tmp_path / "out"

    manifest, _ = run_prepare(source, out)

    assert load_manifest(out) == manifest
    assert manifest["format_version"] == 1
    assert manifest["source"] == str(source)
    assert manifest["text_column"] == "text" and manifest["label_column"] == "label"
    created = datetime.fromisoformat(manifest["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert set(manifest["splits"]) == set(SPLITS)
    for name, entry in manifest["splits"].items():
        path = out / entry["file"]
        assert entry["file"] == f"{name}.parquet"
        assert entry["sha256"] == file_sha256(path)
        frame = load_split(out, name)
        assert entry["rows"] == len(frame)
        assert entry["labels"] == {
            "negative": int((frame["label"] == 0).sum()),
            "positive": int((frame["label"] == 1).sum()),
        }
        assert str(frame["label"].dtype) == "int64"


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


# --------------------------------------------------------------------------------------------
# prepare: never overwrite without --force, and replace atomically with it
# --------------------------------------------------------------------------------------------


def test_prepare_refuses_existing_data_without_force(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "out"
    run_prepare(source, out)
    before = tree_snapshot(out)
    with pytest.raises(
        DataError,
        match=r"out already holds prepared data; pass --force to "
        r"replace it",
    ):
        run_prepare(source, out)
    assert tree_snapshot(out) == before


def test_prepare_force_replaces(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20), test=reviews(2, 2, "t"))
    out = tmp_path / "out"
    run_prepare(source, out)
    (out / "stale.txt").write_text("old", encoding="utf-8")
    other = tmp_path / "other.csv"
    reviews(30, 30, "new").to_csv(other, index=False)

    manifest, _ = run_prepare(other, out, force=True)

    assert manifest["source_kind"] == "file"
    assert sorted(p.name for p in out.iterdir()) == [
        MANIFEST,
        "train.parquet",
        "validation.parquet",
    ]
    assert load_manifest(out)["source"] == str(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.csv", "out", "src"]


def test_prepare_force_keeps_old_data_when_source_is_bad(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "out"
    run_prepare(source, out)
    before = tree_snapshot(out)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["pos", "meh"]}).to_csv(bad, index=False)

    with pytest.raises(DataError, match="unknown label values"):
        run_prepare(bad, out, force=True)

    assert tree_snapshot(out) == before


def test_prepare_force_keeps_old_data_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "out"
    run_prepare(source, out)
    before = tree_snapshot(out)
    real_write = prepare_mod.pq.write_table
    written: list[str] = []

    def fail_on_second(table: Any, where: Any, **kwargs: Any) -> None:
        written.append(str(where))
        if len(written) == 2:
            raise OSError("disk full")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(prepare_mod.pq, "write_table", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        run_prepare(source, out, force=True)

    assert tree_snapshot(out) == before
    # No half-written staging folder is left next to the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_prepare_into_empty_existing_folder(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "out"
    out.mkdir()
    run_prepare(source, out)
    assert (out / MANIFEST).is_file()


def test_prepare_refuses_a_folder_that_is_not_prepared_data(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work", encoding="utf-8")
    for force in (False, True):
        with pytest.raises(DataError, match=r"precious is not empty and holds no manifest\.json"):
            run_prepare(source, out, force=force)
    assert (out / "thesis.tex").read_text(encoding="utf-8") == "years of work"

    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"file\.txt exists and is not a folder"):
        run_prepare(source, not_a_folder, force=True)


# --------------------------------------------------------------------------------------------
# prepare: errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0])
def test_prepare_rejects_bad_validation_fraction(tmp_path: Path, fraction: float) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    with pytest.raises(ConfigError, match=r"validation fraction must be in \(0, 0\.5\]"):
        run_prepare(source, tmp_path / "out", validation_fraction=fraction)


def test_prepare_accepts_half(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(20, 20))
    manifest, _ = run_prepare(source, tmp_path / "out", validation_fraction=0.5)
    assert manifest["splits"]["validation"]["rows"] == 20


@pytest.mark.parametrize(
    "source",
    ["./nope", "/definitely/not/here", "~/not-here-either", "a/b/c", "reviews.csv", "data/imdb"],
)
def test_prepare_missing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    import datasets

    def must_not_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a path must not be sent to the hub")

    monkeypatch.setattr(datasets, "load_dataset", must_not_download)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # so "data/imdb" reads as a mistyped local folder
    with pytest.raises(DataError, match=rf"^{re.escape(source)}: no such file or folder$"):
        run_prepare(source, tmp_path / "out")


def test_prepare_folder_without_split_files(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    pd.DataFrame({"text": ["a"], "label": [1]}).to_parquet(folder / "reviews.parquet")
    with pytest.raises(DataError, match=r"src holds no usable data: expected train\.parquet"):
        run_prepare(folder, tmp_path / "out")


def test_prepare_folder_with_two_train_files(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, train=reviews(5, 5))
    reviews(5, 5).to_csv(folder / "train.csv", index=False)
    with pytest.raises(
        DataError,
        match=r"more than one file for the train split \(train\.csv, "
        r"train\.parquet\)",
    ):
        run_prepare(folder, tmp_path / "out")


def test_prepare_reads_sharded_split_files(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    reviews(10, 0).to_parquet(folder / "train-00000-of-00002.parquet")
    reviews(0, 10, "p").to_parquet(folder / "train-00001-of-00002.parquet")
    manifest, _ = run_prepare(folder, tmp_path / "out")
    assert manifest["splits"]["train"]["rows"] + manifest["splits"]["validation"]["rows"] == 20


def test_prepare_split_empty_after_cleaning(tmp_path: Path) -> None:
    train = reviews(20, 20)
    test = pd.DataFrame({"text": ["<br />", "   "], "label": [0, 1]})
    source = folder_with(tmp_path, train=train, test=test)
    with pytest.raises(
        DataError,
        match=r"\(test split\) has no reviews with text in column "
        r"'text'",
    ):
        run_prepare(source, tmp_path / "out")


def test_prepare_empty_train_file(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(0, 0))
    with pytest.raises(DataError, match=r"\(train split\) holds no rows"):
        run_prepare(source, tmp_path / "out")


def test_prepare_bad_labels(tmp_path: Path) -> None:
    train = reviews(20, 20).astype({"label": str})
    train.loc[3, "label"] = "meh"
    source = folder_with(tmp_path, train=train)
    with pytest.raises(
        DataError,
        match=r"\(train split\): column 'label' has unknown label "
        r"values: 'meh'",
    ):
        run_prepare(source, tmp_path / "out")


def test_prepare_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    reviews(5, 5).to_csv(path, index=False)
    with pytest.raises(
        DataError,
        match=r"has no column 'review' \(columns present: text, label, "
        r"rating\)",
    ):
        run_prepare(path, tmp_path / "out", columns=Columns(text="review"))


def test_prepare_single_class_train(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(0, 20))
    with pytest.raises(DataError, match="the train split has only positive reviews"):
        run_prepare(source, tmp_path / "out")


def test_prepare_too_small_to_stratify(tmp_path: Path) -> None:
    source = folder_with(tmp_path, train=reviews(1, 10))
    with pytest.raises(DataError, match="cannot carve a stratified validation split"):
        run_prepare(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# load_manifest / load_split
# --------------------------------------------------------------------------------------------


def test_load_manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"has no manifest\.json; run `imdb-sentiment download` "
        r"first",
    ):
        load_manifest(tmp_path)


def test_load_manifest_corrupt(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="is corrupt"):
        load_manifest(tmp_path)


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"^no prepared data in .*nowhere; run `imdb-sentiment "
        r"download` first$",
    ):
        load_split(tmp_path / "nowhere", "train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no prepared data in"):
        load_split(empty, "train")

    source = folder_with(tmp_path, train=reviews(20, 20))
    out = tmp_path / "out"
    run_prepare(source, out)
    with pytest.raises(
        DataError,
        match=r"out has no test split; the source had none — evaluate "
        r"with --split validation or --file",
    ):
        load_split(out, "test")
    with pytest.raises(
        DataError,
        match=r"unknown split 'dev'; choose one of train, validation, "
        r"test",
    ):
        load_split(out, "dev")
    (out / "validation.parquet").unlink()
    with pytest.raises(DataError, match="has no validation split"):
        load_split(out, "validation")


def test_sample_is_stratified_and_seeded() -> None:
    frame = pd.DataFrame(
        {"text": [f"r{i}" for i in range(100)], "label": [i % 2 for i in range(100)]}
    )
    a = sample(frame, 20, 1)
    assert len(a) == 20 and a["label"].sum() == 10
    assert a.index.tolist() == sample(frame, 20, 1).index.tolist()
    assert sample(frame, None, 1) is frame
    assert len(sample(frame, 500, 1)) == 100


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------


def real_imdb_dir() -> Path:
    configured = os.environ.get("IMDB_DATA_DIR")
    return Path(configured) if configured else Path(__file__).parents[2] / "shared" / "imdb"


@pytest.mark.realdata
def test_prepare_real_imdb(tmp_path: Path) -> None:
    source = real_imdb_dir()
    if not (source / "train.parquet").is_file():
        pytest.skip(f"real IMDB copy not found at {source} (set IMDB_DATA_DIR to its folder)")
    out = tmp_path / "imdb"

    manifest, log = run_prepare(source, out)

    kept = 25_000 - manifest["duplicates_dropped"]
    assert 0 < manifest["duplicates_dropped"] < 200
    validation = manifest["splits"]["validation"]["rows"]
    assert validation == math.ceil(kept * 0.1)
    assert manifest["splits"]["train"]["rows"] == kept - validation
    assert "test" not in manifest["splits"]
    assert not (out / "test.parquet").exists()
    assert log.has("ignoring unsup.parquet")
    for split in ("train", "validation"):
        labels = manifest["splits"][split]["labels"]
        assert abs(labels["positive"] - labels["negative"]) / (sum(labels.values())) < 0.01
    train = load_split(out, "train")
    assert not train["text"].str.contains("<br", case=False, regex=False).any()
