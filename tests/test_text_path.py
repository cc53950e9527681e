"""One text path: a raw review reads as the same token ids in training and in inference.

Training reads reviews cleaned by ``prepare``; ``predict``, ``serve`` and ``eval --file`` hand
the Predictor raw text. Both must reach the model as the same ids, in truncate and chunks modes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from imdb_sentiment.config import resolve
from imdb_sentiment.data.prepare import prepare
from imdb_sentiment.data.splits import load_split
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.modeling.loading import (
    InferenceSettings,
    load_model_for_training,
    load_tokenizer,
)
from imdb_sentiment.modeling.tokenization import special_tokens, split_windows
from imdb_sentiment.text import clean_text
from imdb_sentiment.training.dataset import encoded_reviews

MAX_LENGTH = 16
HEAD_TOKENS = 4
# IMDB's HTML line breaks in several spellings, tabs, newlines and runs of spaces, long enough
# to be cut (truncate mode) and to need several windows (chunks mode) at MAX_LENGTH tokens.
RAW_REVIEW = (
    "  The film was <br /><br />wonderful,\tthe   plot\n\nbrilliant<br/>and moving.<BR>"
    "I loved it  and the story was a masterpiece<br >and the ending was great, \r\n"
    "the cast charming<br /><br /><br />and the music superb .  "
)


@pytest.fixture(scope="module")
def training_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The prepared train split holding RAW_REVIEW, as training loads it."""
    source = tmp_path_factory.mktemp("raw-source")
    train = pd.DataFrame(
        {
            "text": [RAW_REVIEW, "awful boring film", "dull plot and bad acting", "great movie"],
            "label": [1, 0, 0, 1],
            "review_id": [0, 1, 2, 3],
        }
    )
    train.to_parquet(source / "train.parquet", index=False)
    train.iloc[1:].to_parquet(source / "validation.parquet", index=False)
    out = tmp_path_factory.mktemp("prepared-raw") / "imdb"
    prepare(str(source), out, log=lambda _m: None)
    return load_split(out, "train")


def _training_ids(tiny_model: Path, frame: pd.DataFrame, max_length: int) -> list[int]:
    """RAW_REVIEW's input ids in the dataset training builds from the prepared split."""
    cfg = resolve(
        overrides={
            "model.name": str(tiny_model),
            "model.max_length": max_length,
            "model.truncation": "head+tail",
            "model.head_tokens": HEAD_TOKENS,
        }
    )
    dataset = encoded_reviews(load_tokenizer(str(tiny_model)), frame, cfg)
    [row] = frame.index[frame["review_id"] == 0].tolist()
    return list(dataset[row]["input_ids"])


@pytest.fixture(scope="module")
def predictors(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Predictor]:
    """Predictors over a model folder that reads reviews with head+tail at MAX_LENGTH."""
    folder = tmp_path_factory.mktemp("text-path-model")
    load_model_for_training(str(tiny_model)).save_pretrained(folder)
    load_tokenizer(str(tiny_model)).save_pretrained(folder)
    InferenceSettings(max_length=MAX_LENGTH, truncation="head+tail", head_tokens=HEAD_TOKENS).save(
        folder
    )
    return {
        mode: Predictor.from_path(folder, precision="fp32", long_reviews=mode)
        for mode in ("truncate", "chunks")
    }


def test_the_raw_review_needs_cleaning(tiny_model: Path, training_frame: pd.DataFrame) -> None:
    """Guard: the review is dirty, prepare cleaned it, and the tokenizer sees the difference."""
    [prepared] = training_frame.loc[training_frame["review_id"] == 0, "text"].tolist()
    assert prepared == clean_text(RAW_REVIEW) != RAW_REVIEW
    tok = load_tokenizer(str(tiny_model))
    raw_ids = tok(RAW_REVIEW, add_special_tokens=False)["input_ids"]
    assert raw_ids != tok(prepared, add_special_tokens=False)["input_ids"]


def test_truncate_mode_reads_a_raw_review_as_training_does(
    tiny_model: Path, training_frame: pd.DataFrame, predictors: dict[str, Predictor]
) -> None:
    trained = _training_ids(tiny_model, training_frame, MAX_LENGTH)
    enc = predictors["truncate"].encode([RAW_REVIEW])
    assert enc.truncated == [True]  # long enough that head+tail cutting is compared too
    assert enc.input_ids == [trained]


def test_chunks_mode_reads_a_raw_review_as_training_does(
    tiny_model: Path, training_frame: pd.DataFrame, predictors: dict[str, Predictor]
) -> None:
    """Windows over the raw review are the windows over the ids training tokenized."""
    predictor = predictors["chunks"]
    prefix, suffix = special_tokens(predictor.tokenizer)
    # Long enough a max_length that training keeps the whole review: every token it reads.
    full = _training_ids(tiny_model, training_frame, 512)
    whole = full[len(prefix) : len(full) - len(suffix)]
    expected = split_windows([whole], prefix, suffix, MAX_LENGTH)
    windows, logits = predictor.window_logits([RAW_REVIEW])
    assert len(windows.input_ids) > 1
    assert windows.input_ids == expected.input_ids
    assert logits.shape == (len(expected.input_ids), 2)
    assert predictor.predict([RAW_REVIEW])[0].n_tokens == len(whole)
