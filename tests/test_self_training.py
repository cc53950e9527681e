"""Self-training: ``pseudo-label`` labels unlabelled reviews with trained runs, and
``train --extra-train`` adds the confident ones to the training split only.

The teacher is conftest's tiny trained run; the student trains the tiny DistilBERT for one epoch.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame, tiny_train_overrides
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.config import resolve
from imdb_sentiment.data.files import file_sha256
from imdb_sentiment.data.splits import load_split
from imdb_sentiment.errors import TrainingFailedError
from imdb_sentiment.inference.pseudo_label import select
from imdb_sentiment.text import clean_text

runner = CliRunner()


def _first_text(data: Path, split: str) -> str:
    return str(load_split(data, split)["text"].iloc[0])


@pytest.fixture(scope="module")
def unsup(tmp_path_factory: pytest.TempPathFactory, prepared_data: Path) -> Path:
    """40 new reviews, one validation review, one training review and one repeat."""
    frame = synthetic_frame(40, seed=11)[["text"]]
    extra = [
        _first_text(prepared_data, "validation"),
        _first_text(prepared_data, "train"),
        str(frame["text"].iloc[0]),
    ]
    path = tmp_path_factory.mktemp("unsup") / "unsup.parquet"
    pd.concat([frame, pd.DataFrame({"text": extra})]).to_parquet(path, index=False)
    return path


def _label(run: Path, unsup: Path, data: Path, out: Path, *flags: str):
    return runner.invoke(
        app,
        [
            "pseudo-label",
            str(run),
            "--unlabelled",
            str(unsup),
            "--data",
            str(data),
            "--output",
            str(out),
            "--precision",
            "fp32",
            *flags,
        ],
    )


def test_pseudo_label_writes_rows_and_manifest(
    trained_run: Path, prepared_data: Path, unsup: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo.parquet"
    result = _label(
        trained_run, unsup, prepared_data, out, "--min-confidence", "0.5001", "--drop-overlap"
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["text", "label", "confidence"]
    assert len(frame) > 0 and (frame["confidence"] >= 0.5001).all()
    assert set(frame["label"]) <= {0, 1}
    manifest = json.loads((tmp_path / "pseudo.manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["rows"], counts["held_out"], counts["in_train"], counts["duplicates"]) == (
        43,
        1,
        1,
        1,
    )
    assert counts["labelled"] == 40 and counts["kept"] == len(frame)
    assert manifest["source"]["sha256"] == file_sha256(unsup)
    assert manifest["output"]["sha256"] == file_sha256(out)
    assert manifest["teachers"][0]["run"] == str(trained_run.resolve())
    assert manifest["settings"]["min_confidence"] == 0.5001
    assert sum(manifest["labels"]["kept"].values()) == len(frame)
    held = {clean_text(_first_text(prepared_data, s)) for s in ("validation", "train")}
    assert not held & set(frame["text"])


def test_two_teachers_are_averaged_and_max_reviews_samples(
    trained_run: Path, prepared_data: Path, unsup: Path, tmp_path: Path
) -> None:
    out = tmp_path / "two.parquet"
    result = runner.invoke(
        app,
        [
            "pseudo-label",
            str(trained_run),
            str(trained_run),
            "--unlabelled",
            str(unsup),
            "--data",
            str(prepared_data),
            "--output",
            str(out),
            "--min-confidence",
            "0.5001",
            "--drop-overlap",
            "--max-reviews",
            "10",
            "--precision",
            "fp32",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "two.manifest.json").read_text())
    assert len(manifest["teachers"]) == 2 and manifest["counts"]["labelled"] == 10
    assert len(pd.read_parquet(out)) <= 10


def test_validation_texts_are_refused_without_drop_overlap(
    trained_run: Path, prepared_data: Path, unsup: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pseudo.parquet"
    result = _label(trained_run, unsup, prepared_data, out)
    assert result.exit_code == 3
    assert "1 of its texts also occur in the prepared validation" in result.output
    assert "--drop-overlap" in result.output and not out.exists()
    split = prepared_data / "validation.parquet"
    result = _label(trained_run, split, prepared_data, out, "--drop-overlap")
    assert result.exit_code == 3 and "is the prepared validation split" in result.output


def test_threshold_and_balance_select_the_sure_reviews() -> None:
    texts = [f"review {i}" for i in range(6)]
    positive = np.array([0.99, 0.95, 0.6, 0.3, 0.02, 0.97])
    frame, counts = select(texts, positive, 0.9, balance=False)
    assert frame["text"].tolist() == ["review 0", "review 1", "review 4", "review 5"]
    assert frame["label"].tolist() == [1, 1, 0, 1]
    assert np.allclose(frame["confidence"], [0.99, 0.95, 0.98, 0.97])
    assert counts["confident"] == {"negative": 1, "positive": 3}
    frame, counts = select(texts, positive, 0.9, balance=True)
    # One of each: the most confident positive, in pool order.
    assert frame["text"].tolist() == ["review 0", "review 4"]
    assert counts["kept"] == {"negative": 1, "positive": 1}
    frame, _ = select(texts, positive, 1.0, balance=False)
    assert frame.empty


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--min-confidence", "0.5"], 2, "--min-confidence must be in (0.5, 1]"),
        (["--min-confidence", "1.2"], 2, "--min-confidence must be in (0.5, 1]"),
        (["--max-reviews", "0"], 2, "--max-reviews must be at least 1"),
        (["--text-column", "review"], 3, "has no column 'review'"),
    ],
)
def test_bad_pseudo_label_flags_are_one_line_errors(
    trained_run: Path,
    prepared_data: Path,
    unsup: Path,
    tmp_path: Path,
    flags: list[str],
    code: int,
    message: str,
) -> None:
    out = tmp_path / "pseudo.parquet"
    result = _label(trained_run, unsup, prepared_data, out, *flags)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the error (and any progress line)
    assert not out.exists()


@pytest.mark.parametrize(
    ("first", "balance", "message"),
    [
        (0.6, [], "nothing kept: no review reached --min-confidence 0.9"),
        (0.99, ["--balance"], "nothing kept: reviews of one label at most (--balance needs both)"),
    ],
)
def test_nothing_confident_is_an_error_not_an_empty_file(
    trained_run: Path,
    prepared_data: Path,
    unsup: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    first: float,
    balance: list[str],
    message: str,
) -> None:
    from imdb_sentiment.inference import pseudo_label

    def unsure(_teacher: Path, texts: list[str], *_a: object) -> tuple[np.ndarray, dict]:
        # At most the first review is sure (of "positive"); the others are not.
        return np.r_[first, np.full(len(texts) - 1, 0.6)], {}

    monkeypatch.setattr(pseudo_label, "teacher_probabilities", unsure)
    out = tmp_path / "pseudo.parquet"
    result = _label(trained_run, unsup, prepared_data, out, "--drop-overlap", *balance)
    assert result.exit_code == 3 and message in result.output
    assert not out.exists()


def test_bad_pseudo_label_files(
    trained_run: Path, prepared_data: Path, unsup: Path, tmp_path: Path
) -> None:
    missing = _label(trained_run, tmp_path / "nope.parquet", prepared_data, tmp_path / "a.parquet")
    assert missing.exit_code == 3 and "no such file" in missing.output
    csv = _label(trained_run, unsup, prepared_data, tmp_path / "a.csv")
    assert csv.exit_code == 2 and "--output must end in .parquet" in csv.output
    (tmp_path / "b.parquet").write_bytes(b"keep me")
    kept = _label(trained_run, unsup, prepared_data, tmp_path / "b.parquet", "--drop-overlap")
    assert kept.exit_code == 5 and "--overwrite" in kept.output
    assert (tmp_path / "b.parquet").read_bytes() == b"keep me"
    no_default = runner.invoke(
        app,
        [
            "pseudo-label",
            str(trained_run),
            "--data",
            str(prepared_data),
            "--output",
            str(tmp_path / "c.parquet"),
        ],
    )
    assert no_default.exit_code == 3 and "--unlabelled PATH" in no_default.output


def test_extra_train_adds_rows_to_training_only(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    from imdb_sentiment.training.loop import train

    new = synthetic_frame(20, seed=21)[["text", "label"]]
    val_text, train_text = (_first_text(prepared_data, s) for s in ("validation", "train"))
    extra = pd.concat(
        [
            new,
            pd.DataFrame(
                {
                    "text": [val_text, train_text, new["text"].iloc[0]],
                    "label": [1, 1, int(new["label"].iloc[0])],
                }
            ),
        ]
    )
    extra["confidence"] = 0.95
    path = tmp_path / "pseudo.parquet"
    extra.to_parquet(path, index=False)
    cfg = resolve(
        overrides={
            **tiny_train_overrides(tiny_model, prepared_data, tmp_path / "runs", "student"),
            "training.epochs": 1,
            "model.max_length": 32,
            "data.max_train_samples": 40,
            "data.extra_train": str(path),
        }
    )
    run_dir = tmp_path / "runs" / "student"
    # A few steps of the tiny model may stay at chance; the failed run records its data too.
    with contextlib.suppress(TrainingFailedError):
        train(cfg, log=lambda _m: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert metrics["train_samples"] == 40 + 20
    assert metrics["validation_samples"] == len(load_split(prepared_data, "validation"))
    record = json.loads((run_dir / "data_manifest.json").read_text())["extra_train"]
    assert (
        record["rows"],
        record["added"],
        record["dropped_held_out"],
        record["dropped_in_train"],
        record["dropped_duplicates"],
    ) == (23, 20, 1, 1, 1)
    assert record["sha256"] == file_sha256(path)
    assert sum(record["labels"].values()) == 20
    assert json.loads((run_dir / "data_manifest.json").read_text())["used"]["train_rows"] == 60
    assert "extra_train: " + str(path) in (run_dir / "config.yaml").read_text()
    sources = (run_dir / "config_sources.yaml").read_text()
    assert "data.extra_train: flag" in sources


def test_extra_train_bad_files_are_one_line_errors(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    base = [
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared_data),
        "--output-dir",
        str(tmp_path / "runs"),
        "--report-to",
        "none",
        "--max-length",
        "32",
    ]
    missing = runner.invoke(app, [*base, "--extra-train", str(tmp_path / "nope.parquet")])
    assert missing.exit_code == 3 and "no such file" in missing.output
    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"review": ["fine film"], "label": [1]}).to_parquet(wrong, index=False)
    result = runner.invoke(app, [*base, "--extra-train", str(wrong)])
    assert result.exit_code == 3 and "needs rows with a 'text' and a 'label' column" in (
        result.output
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
