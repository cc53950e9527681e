"""Unlabelled text as the blocks of token ids masked-LM training reads (for ``adapt``)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from imdb_sentiment.config import Config


class Blocks:
    """Token-id blocks as the map-style dataset ``Trainer`` reads; the collator pads and masks."""

    def __init__(self, rows: Sequence[Sequence[int] | np.ndarray]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = [int(t) for t in self.rows[i]]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}


def blocks(tokenizer: Any, texts: Sequence[str], cfg: Config, *, pack: bool) -> Blocks:
    """``texts`` as blocks of at most ``model.max_length`` tokens, with the special tokens.

    Packed: the reviews one after another, separated like sentences, cut into full blocks (no
    padding, every token read). Otherwise one block per review, cut as the classifier cuts it.
    """
    from imdb_sentiment.modeling.tokenization import encode, special_tokens, whole_token_ids

    m = cfg.model
    if not texts:
        return Blocks([])
    if not pack:
        return Blocks(encode(tokenizer, texts, m.max_length, m.truncation, m.head_budget).input_ids)
    max_length = min(m.max_length, getattr(tokenizer, "model_max_length", m.max_length))
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    sep = suffix or prefix
    ids = whole_token_ids(tokenizer, texts)
    stream = np.fromiter(chain.from_iterable(i + sep for i in ids), dtype=np.int64)
    ends = np.asarray(prefix + suffix, dtype=np.int64)
    rows = [
        np.concatenate([ends[: len(prefix)], stream[s : s + budget], ends[len(prefix) :]])
        for s in range(0, len(stream), budget)
    ]
    return Blocks(rows)
