"""Truncation strategies, chunked reading of long reviews, and settings travelling with a run."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imdb_sentiment.errors import ConfigError
from imdb_sentiment.modeling.loading import load_tokenizer
from imdb_sentiment.modeling.tokenization import (
    average_by_review,
    check_mode,
    cut,
    encode,
    special_tokens,
    split_windows,
    window_starts,
)

IDS = list(range(100, 120))  # 20 tokens


def test_cut_strategies_keep_the_right_tokens() -> None:
    assert cut(IDS, 8, "head", 3) == IDS[:8]
    assert cut(IDS, 8, "tail", 3) == IDS[-8:]
    assert cut(IDS, 8, "head+tail", 3) == IDS[:3] + IDS[-5:]
    assert cut(IDS, 30, "head+tail", 3) == IDS  # short reviews are untouched
    assert cut(IDS, 20, "head", 3) == IDS  # exactly at the budget
    assert cut(IDS, 8, "head+tail", 8) == IDS[:8]  # no tail left
    with pytest.raises(ValueError):
        cut(IDS, 8, "middle", 3)


@pytest.mark.parametrize("strategy", ["head", "tail", "head+tail"])
def test_encode_cuts_whole_tokenized_reviews(tiny_model: Path, strategy: str) -> None:
    tok = load_tokenizer(str(tiny_model))
    words = [f"{w}" for w in ("great", "awful", "film", "plot", "scene") * 8]  # 40 tokens
    text = " ".join(words)
    enc = encode(tok, [text, "great film"], max_length=12, strategy=strategy, head_tokens=4)
    prefix, suffix = special_tokens(tok)
    whole = tok(text, add_special_tokens=False)["input_ids"]
    budget = 12 - len(prefix) - len(suffix)
    expected = {
        "head": whole[:budget],
        "tail": whole[-budget:],
        "head+tail": whole[:4] + whole[-(budget - 4) :],
    }[strategy]
    assert enc.input_ids[0] == prefix + expected + suffix
    assert len(enc.input_ids[0]) == 12
    assert enc.n_tokens[0] == len(whole) and enc.truncated == [True, False]
    assert enc.read_fraction(0, 12) == pytest.approx(budget / len(whole))


def test_window_starts_cover_every_token_with_overlap() -> None:
    assert window_starts(5, 10) == [0]
    starts = window_starts(100, 20)
    covered = set()
    for s in starts:
        covered.update(range(s, s + 20))
    assert covered == set(range(100))
    assert starts[-1] == 80  # the last window ends with the review
    assert {b - a for a, b in itertools.pairwise(starts[:-1])} == {15}
    assert window_starts(21, 20, overlap=0) == [0, 1]


def test_split_windows_and_average() -> None:
    windows = split_windows([list(range(50)), [1, 2]], [101], [102], max_length=22)
    assert windows.windows_per_review().tolist() == [3, 1]
    assert all(len(w) <= 22 and w[0] == 101 and w[-1] == 102 for w in windows.input_ids)
    probs = np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.5, 0.5]])
    avg = average_by_review(probs, windows.owner, 2)
    assert np.allclose(avg, [[0.5, 0.5], [0.5, 0.5]])


def test_check_mode() -> None:
    assert check_mode("chunks") == "chunks"
    with pytest.raises(ConfigError, match="--long-reviews"):
        check_mode("everything")


def test_predictor_chunks_average_window_probabilities(trained_run: Path) -> None:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.metrics.classification import softmax

    truncating = Predictor.from_path(trained_run)
    chunking = Predictor.from_path(trained_run, long_reviews="chunks")
    short = ["wonderful brilliant film", "awful boring movie"]
    assert np.allclose(truncating.predict_proba(short), chunking.predict_proba(short), atol=1e-5)

    long_text = " ".join(["the great film was a masterpiece"] * 10 + ["awful boring waste"] * 12)
    windows, logits = chunking.window_logits([long_text])
    assert len(windows.input_ids) > 1
    expected = softmax(logits, chunking.settings.temperature).mean(axis=0)
    assert np.allclose(chunking.predict_proba([long_text])[0], expected, atol=1e-6)
    [pred] = chunking.predict([long_text])
    assert pred.truncated is False and pred.read_fraction == 1.0
    [cut_pred] = truncating.predict([long_text])
    assert cut_pred.truncated is True


def test_truncation_settings_round_trip_through_a_run(
    tmp_path: Path, tiny_model: Path, prepared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run trained with head+tail saves it; Predictor and eval read reviews the same way."""
    from conftest import tiny_train_overrides

    from imdb_sentiment.config import resolve
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.metrics import classification
    from imdb_sentiment.training.loop import train

    overrides = tiny_train_overrides(tiny_model, prepared_data, tmp_path, "headtail")
    overrides.update(
        {
            "model.truncation": "head+tail",
            "model.head_tokens": 5,
            "model.max_length": 24,
            "training.epochs": 1,
        }
    )
    # One epoch is too short to beat chance; this test is about settings, not learning.
    monkeypatch.setattr(classification, "at_chance", lambda _m, margin=0.0: False)
    run = train(resolve(overrides=overrides), log=lambda _m: None).run_dir
    saved = json.loads((run / "model" / "imdb_sentiment.json").read_text())
    assert saved["truncation"] == "head+tail" and saved["head_tokens"] == 5
    assert saved["max_length"] == 24

    predictor = Predictor.from_path(run)
    text = " ".join(["great"] * 5 + ["plot"] * 30 + ["awful"] * 20)
    enc = predictor.encode([text])
    tok = predictor.tokenizer
    whole = tok(text, add_special_tokens=False)["input_ids"]
    prefix, suffix = special_tokens(tok)
    assert enc.input_ids[0] == prefix + whole[:5] + whole[-(24 - 2 - 5) :] + suffix
    # The model folder alone (copied elsewhere) carries the same settings.
    copy = tmp_path / "published"
    shutil.copytree(run / "model", copy)
    assert Predictor.from_path(copy).encode([text]).input_ids == enc.input_ids
