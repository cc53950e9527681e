"""Prepared reviews as the tokenized, map-style dataset ``Trainer`` reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imdb_sentiment.config import Config
from imdb_sentiment.modeling.tokenization import encode

if TYPE_CHECKING:
    import pandas as pd


class EncodedReviews:
    """Tokenized reviews as the map-style dataset Trainer expects (one dict per review).

    Padding is left to the collator, so each batch is only as wide as its longest review.
    """

    def __init__(self, input_ids: list[list[int]], labels: list[int]) -> None:
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": self.labels[i]}


def encoded_reviews(tokenizer: Any, frame: pd.DataFrame, cfg: Config) -> EncodedReviews:
    """Tokenize ``frame``'s ``text`` the way the model will read it (``cfg.model``'s length and
    truncation, through the one text path in :func:`encode`), with its ``label`` column."""
    m = cfg.model
    enc = encode(tokenizer, frame["text"].tolist(), m.max_length, m.truncation, m.head_budget)
    return EncodedReviews(enc.input_ids, frame["label"].astype(int).tolist())
