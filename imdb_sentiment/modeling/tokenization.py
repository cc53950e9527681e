"""The one way a review becomes token ids: tokenize whole, then cut with the trained strategy.

Training, evaluation, prediction, serving and export all go through :func:`encode`, so a model
is always read the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from imdb_sentiment.modeling.loading import _quiet_transformers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class Encoded:
    """Token ids of a batch of reviews, unpadded, with how much of each review was kept."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    n_tokens: list[int]  # tokens in the whole review (without special tokens)
    truncated: list[bool]

    def read_fraction(self, i: int, max_length: int) -> float:
        if self.n_tokens[i] == 0:
            return 1.0
        return min(1.0, (max_length - 2) / self.n_tokens[i]) if self.truncated[i] else 1.0


def cut(ids: list[int], budget: int, strategy: str, head_tokens: int) -> list[int]:
    """Keep at most ``budget`` token ids: from the start, the end, or both (Sun et al., 2019)."""
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[-budget:]
    if strategy == "head+tail":
        head = min(head_tokens, budget)
        tail = budget - head
        return ids[:head] + (ids[-tail:] if tail else [])
    raise ValueError(f"unknown truncation strategy {strategy!r}")


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence ([CLS] ... [SEP] for BERT).

    Found by comparing a probe with and without special tokens, which works for every
    tokenizer family without relying on per-class helper methods.
    """
    cached = getattr(tokenizer, "_imdb_sentiment_specials", None)
    if cached is not None:
        return cached
    probe = "movie"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            result = (list(full[:start]), list(full[start + len(bare) :]))
            break
    else:  # pragma: no cover - no known tokenizer rewrites the text it wraps
        result = ([], [])
    tokenizer._imdb_sentiment_specials = result
    return result


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_length: int,
    strategy: str = "head",
    head_tokens: int = 128,
) -> Encoded:
    """Tokenize reviews whole, then cut each to ``max_length`` with the chosen strategy."""
    _quiet_transformers()
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        max_length = model_max
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
    ids_out: list[list[int]] = []
    mask_out: list[list[int]] = []
    n_tokens: list[int] = []
    truncated: list[bool] = []
    for ids in raw["input_ids"]:
        kept = cut(ids, budget, strategy, head_tokens)
        full = prefix + kept + suffix
        ids_out.append(full)
        mask_out.append([1] * len(full))
        n_tokens.append(len(ids))
        truncated.append(len(ids) > budget)
    return Encoded(ids_out, mask_out, n_tokens, truncated)
