"""``predict --file ... --output ...`` in chunks: the same reviews, rows, order and errors as
reading everything at once, and no file left behind by a run that fails or is stopped."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import synthetic_frame
from typer.testing import CliRunner

from imdb_sentiment.cli import predict as predict_cli
from imdb_sentiment.cli.app import app
from imdb_sentiment.data import stream
from imdb_sentiment.data.files import read_texts_file
from imdb_sentiment.data.stream import TableWriter, count_texts, iter_texts
from imdb_sentiment.errors import DataError, ImdbSentimentError, ModelError
from imdb_sentiment.inference.predictor import Predictor

CHUNK = 4
FORMATS = ("txt", "csv", "tsv", "jsonl", "json", "array-json", "parquet")


def write_reviews(texts: list[str], path: Path) -> Path:
    frame = pd.DataFrame({"text": texts, "n": range(len(texts))})
    suffix = path.suffix
    if suffix == ".txt":
        path.write_text("".join(t + "\n\n" for t in texts), encoding="utf-8")
    elif suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        # Row groups smaller than a chunk, so chunks span row groups.
        frame.to_parquet(path, index=False, row_group_size=3)
    elif path.name.endswith("array.json"):
        frame.to_json(path, orient="records", force_ascii=False)
    else:
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def streamed(path: Path, **kwargs: object) -> list[list[str]]:
    return list(iter_texts(path, chunk_size=CHUNK, **kwargs))  # type: ignore[arg-type]


def data_error(call: object) -> str:
    with pytest.raises(DataError) as info:
        call()  # type: ignore[operator]
    return str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("n", [1, CHUNK * 3 - 1, CHUNK * 3, CHUNK * 3 + 1])
def test_chunks_hold_the_reviews_read_whole_in_order(fmt: str, n: int, tmp_path: Path) -> None:
    texts = synthetic_frame(n, seed=n)["text"].tolist()
    texts[0] = "Café <br /> naïve 😀 “quoted”, with\ttab"  # non-ASCII survives every format
    path = write_reviews(texts, tmp_path / f"reviews.{fmt.replace('-', '.')}")
    chunks = streamed(path)
    assert [len(c) for c in chunks] == [CHUNK] * (n // CHUNK) + ([n % CHUNK] if n % CHUNK else [])
    assert [t for c in chunks for t in c] == read_texts_file(path)
    assert count_texts(path, chunk_size=CHUNK) == n


@pytest.mark.parametrize("block", [1, 2, 3, 7, 1 << 20])
def test_txt_blocks_split_lines_as_the_whole_text_does(
    block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "_TXT_BLOCK", block)
    path = tmp_path / "mixed.txt"
    # CRLF, lone CR, Unicode line separators, blank lines, multi-byte characters, no final EOL.
    path.write_bytes("one é\r\ntwo\rthree\u2028four\x85five\n\n  \nsix 😀\r\n\r\nlast".encode())
    assert [t for c in streamed(path) for t in c] == read_texts_file(path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine line\nstill fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as whole:
        read_texts_file(bad)
    assert data_error(lambda: count_texts(bad, chunk_size=CHUNK)) == str(whole.value)
    assert "position 24" in str(whole.value)  # in the whole file, not a block


def _holes(tmp_path: Path, suffix: str) -> Path:
    texts: list[str | None] = [f"review {i}" for i in range(14)]
    for i in (1, 5, 6, 9, 12, 13):  # six holes, spread over four chunks
        texts[i] = None if i % 2 else "<br />"
    return write_reviews(texts, tmp_path / f"holes{suffix}")  # type: ignore[arg-type]


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.txt").write_text("\n \n<br />\n")
    (tmp_path / "header.csv").write_text("text,n\n")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n' * 6 + "{oops\n")
    (tmp_path / "reviews.docx").write_text("x")
    write_reviews(["a", "b"], tmp_path / "other.parquet")
    write_reviews(["a", "b"], tmp_path / "other.jsonl")
    write_reviews(["a", "b"], tmp_path / "other.csv")
    # A key that only later records have: earlier records have no text.
    late = tmp_path / "late.jsonl"
    late.write_text(
        "".join(json.dumps({"n": i}) + "\n" for i in range(5))
        + json.dumps({"n": 5, "text": "x"})
        + "\n"
    )
    return {
        name: (tmp_path / name, kwargs)
        for name, kwargs in [
            ("empty.csv", {}),
            ("blank.txt", {}),
            ("header.csv", {}),
            ("corrupt.parquet", {}),
            ("broken.jsonl", {}),
            ("reviews.docx", {}),
            ("missing.csv", {}),
            ("late.jsonl", {}),
            ("other.parquet", {"text_column": "review"}),
            ("other.jsonl", {"text_column": "review"}),
            ("other.csv", {"text_column": "review"}),
        ]
    }


def test_bad_files_raise_the_whole_file_readers_messages(tmp_path: Path) -> None:
    cases = _bad_files(tmp_path)
    for suffix in (".csv", ".jsonl", ".parquet"):
        cases[f"holes{suffix}"] = (_holes(tmp_path, suffix), {})
    for name, (path, kwargs) in cases.items():
        expected = data_error(lambda p=path, k=kwargs: read_texts_file(p, **k))
        got = data_error(lambda p=path, k=kwargs: count_texts(p, chunk_size=CHUNK, **k))
        if name in ("corrupt.parquet", "broken.jsonl"):  # the reason in brackets is the parser's
            got, expected = got.split(" (")[0], expected.split(" (")[0]
        assert got == expected, name
        if name.startswith("holes"):
            assert "row 2, 6, 7, 10, 13 and 1 more" in got


def test_rows_written_in_chunks_equal_pandas_writing_all_at_once(tmp_path: Path) -> None:
    frame = synthetic_frame(11, seed=3).drop(columns=["label"])
    frame["text"] = frame["text"].str.replace("film", 'film, "quoted"\nnewline é', n=1)
    frame["p"] = [i / 7 for i in range(len(frame))]
    frame["flag"] = [i % 3 == 0 for i in range(len(frame))]
    for suffix in (".csv", ".jsonl", ".parquet"):
        whole = tmp_path / f"whole{suffix}"
        if suffix == ".csv":
            frame.to_csv(whole, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(whole, index=False)
        else:
            frame.to_json(whole, orient="records", lines=True, force_ascii=False)
        chunked = tmp_path / f"chunked{suffix}"
        with TableWriter(chunked) as writer:
            for start in range(0, len(frame), CHUNK):
                writer.write(frame.iloc[start : start + CHUNK].reset_index(drop=True))
        assert writer.rows == len(frame)
        if suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(chunked), pd.read_parquet(whole))
            import pyarrow.parquet as pq

            assert pq.read_schema(chunked).equals(pq.read_schema(whole), check_metadata=True)
        else:
            assert chunked.read_bytes() == whole.read_bytes(), suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{kind}{s}" for kind in ("whole", "chunked") for s in (".csv", ".jsonl", ".parquet")
    )


def _failing(frames: int) -> Iterator[pd.DataFrame]:
    for i in range(frames):
        yield pd.DataFrame({"text": [f"r{i}"], "label": ["positive"]})
    raise ModelError("the model failed mid-way")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_failure_mid_stream_leaves_no_file_and_the_old_one_whole(
    suffix: str, tmp_path: Path
) -> None:
    target = tmp_path / "sub" / f"out{suffix}"
    with pytest.raises(ModelError), TableWriter(target) as writer:
        for frame in _failing(3):
            writer.write(frame)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"old predictions")
    with pytest.raises(ModelError), TableWriter(target, overwrite=True) as writer:
        for frame in _failing(3):
            writer.write(frame)
    assert target.read_bytes() == b"old predictions"
    assert list(target.parent.iterdir()) == [target]


def test_without_overwrite_a_file_that_appears_meanwhile_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(FileExistsError), TableWriter(target, overwrite=False) as writer:
        writer.write(pd.DataFrame({"text": ["a"]}))
        target.write_text("someone else's")
    assert target.read_text() == "someone else's"
    assert list(tmp_path.iterdir()) == [target]


def test_sigterm_while_writing_deletes_the_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"

    def results() -> Iterator[tuple[list[str], list[dict[str, object]]]]:
        yield ["first"], [{"label": "positive"}]
        os.kill(os.getpid(), signal.SIGTERM)
        yield ["second"], [{"label": "negative"}]

    with pytest.raises(ImdbSentimentError) as info:
        predict_cli.write_predictions(target, results(), overwrite=False)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert "not written" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )


# ------------------------------------------------------------------------------- the command


runner = CliRunner()


@pytest.fixture(scope="module")
def in_memory(trained_run: Path) -> tuple[list[str], list[dict[str, object]]]:
    texts = synthetic_frame(CHUNK * 3 + 1, seed=21)["text"].tolist()
    predictor = Predictor.from_path(trained_run, precision="fp32")
    return texts, [p.to_dict() for p in predictor.predict(texts)]


@pytest.mark.parametrize(
    ("fmt", "out"), [("txt", "csv"), ("csv", "jsonl"), ("jsonl", "parquet"), ("parquet", "csv")]
)
def test_cli_streams_the_rows_the_in_memory_path_gives(
    fmt: str,
    out: str,
    in_memory: tuple[list[str], list[dict[str, object]]],
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", CHUNK)
    texts, rows = in_memory
    calls: list[int] = []
    predict = Predictor.predict
    monkeypatch.setattr(
        Predictor, "predict", lambda self, chunk: calls.append(len(chunk)) or predict(self, chunk)
    )
    source = write_reviews(texts, tmp_path / f"reviews.{fmt}")
    target = tmp_path / f"preds.{out}"
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(trained_run),
            "--file",
            str(source),
            "--output",
            str(target),
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {len(texts):,} predictions to {target}" in result.output
    assert calls == [CHUNK, CHUNK, CHUNK, 1]  # never more than a chunk at once
    got = (
        pd.read_parquet(target)
        if out == "parquet"
        else pd.read_csv(target)
        if out == "csv"
        else pd.read_json(target, lines=True)
    )
    expected = pd.DataFrame([{"text": t, **r} for t, r in zip(texts, rows, strict=True)])
    # Batches are formed within a chunk, so float sums may differ in the last bits.
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, atol=1e-5)


def test_cli_failure_mid_stream_writes_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", CHUNK)
    source = write_reviews(
        synthetic_frame(CHUNK * 2 + 1, seed=4)["text"].tolist(), tmp_path / "reviews.csv"
    )
    calls: list[int] = []
    predict = Predictor.predict

    def flaky(self: Predictor, chunk: list[str]) -> object:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise ModelError("the model failed on chunk 2")
        return predict(self, chunk)

    monkeypatch.setattr(Predictor, "predict", flaky)
    target = tmp_path / "out" / "preds.parquet"
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(trained_run),
            "--file",
            str(source),
            "--output",
            str(target),
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 4 and "chunk 2" in result.output
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "reviews.csv"]


def test_cli_checks_the_whole_file_before_loading_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", CHUNK)
    holes = _holes(tmp_path, ".parquet")
    # No model: an error about the model would mean the file was not checked first.
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "no-run"),
            "--file",
            str(holes),
            "--output",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code == 3
    assert "row 2, 6, 7, 10, 13 and 1 more" in result.output
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "no-run"),
            "fine",
            " ",
            "--file",
            str(write_reviews(["x"], tmp_path / "r.csv")),
        ],
    )
    assert result.exit_code == 3 and "review 2 is empty" in result.output
