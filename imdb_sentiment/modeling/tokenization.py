"""The one way a review becomes token ids: clean, tokenize whole, then cut or window.

Training, evaluation, prediction, serving and export all go through :func:`encode` (one cut
with the trained strategy) or :func:`chunk_windows` (overlapping full-length windows, for
``--long-reviews chunks``). Both clean the text with :func:`imdb_sentiment.text.clean_text`
first, so a raw review reads the same wherever it enters, and prepared data (already cleaned;
cleaning is idempotent) reads the same as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.errors import ConfigError
from imdb_sentiment.metrics.classification import softmax
from imdb_sentiment.modeling.loading import _quiet_transformers
from imdb_sentiment.text import clean_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LONG_REVIEW_MODES = ("truncate", "chunks")
"""``truncate`` cuts each review once with the trained strategy; ``chunks`` reads it all."""


def check_mode(mode: str) -> str:
    """Validate a ``--long-reviews`` value."""
    if mode not in LONG_REVIEW_MODES:
        raise ConfigError(
            f"--long-reviews must be one of {', '.join(LONG_REVIEW_MODES)}, got {mode!r}"
        )
    return mode


@dataclass
class Encoded:
    """Token ids of a batch of reviews, unpadded, with how much of each review was kept."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    n_tokens: list[int]  # tokens in the whole review (without special tokens)
    truncated: list[bool]
    budget: int | None = None
    """Review tokens one cut keeps: the usable length (the saved max length, or the encoder's
    own limit when that is shorter) less the special tokens. Set by :func:`encode`."""

    def read_fraction(self, i: int, max_length: int | None = None) -> float:
        """Share of review ``i``'s tokens the model read (1.0 when it was not cut).

        Uses the :attr:`budget` the cut really had; ``max_length`` (less two special tokens)
        only for an encoding made without one.
        """
        if self.n_tokens[i] == 0 or not self.truncated[i]:
            return 1.0
        kept = self.budget if self.budget is not None else (max_length or 2) - 2
        return min(1.0, kept / self.n_tokens[i])


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


def _tokenize_whole(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> tuple[list[list[int]], int]:
    """Ids of each cleaned review, without special tokens or truncation, and the usable length."""
    _quiet_transformers()
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        max_length = model_max
    cleaned = [clean_text(text) for text in texts]
    raw = tokenizer(cleaned, add_special_tokens=False, truncation=False, verbose=False)
    return list(raw["input_ids"]), max_length


def whole_token_ids(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """Ids of each cleaned review, whole, without special tokens (``adapt`` packs them into
    blocks itself)."""
    return _tokenize_whole(tokenizer, texts, 0)[0]


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    strategy: str = "head",
    head_tokens: int = 128,
) -> Encoded:
    """Clean and tokenize reviews whole, then cut each to ``max_length`` with ``strategy``."""
    token_ids, max_length = _tokenize_whole(tokenizer, texts, max_length)
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    ids_out: list[list[int]] = []
    mask_out: list[list[int]] = []
    n_tokens: list[int] = []
    truncated: list[bool] = []
    for ids in token_ids:
        kept = cut(ids, budget, strategy, head_tokens)
        full = prefix + kept + suffix
        ids_out.append(full)
        mask_out.append([1] * len(full))
        n_tokens.append(len(ids))
        truncated.append(len(ids) > budget)
    return Encoded(ids_out, mask_out, n_tokens, truncated, budget)


# ------------------------------------------------------------------- long reviews: windows


def window_starts(n_tokens: int, budget: int, overlap: int | None = None) -> list[int]:
    """Start offsets of windows of ``budget`` tokens covering ``n_tokens`` tokens.

    Consecutive windows share ``overlap`` tokens (a quarter of the window by default). The last
    window is aligned with the end of the review rather than left as a short scrap, so every
    window the model sees is full length.
    """
    if budget < 1:
        raise ValueError("window budget must be at least one token")
    if n_tokens <= budget:
        return [0]
    overlap = budget // 4 if overlap is None else overlap
    step = max(1, budget - overlap)
    starts = list(range(0, n_tokens - budget, step))
    starts.append(n_tokens - budget)
    return starts


@dataclass
class Windows:
    """Token ids of every window of a batch of reviews, and the review each came from."""

    input_ids: list[list[int]]
    owner: np.ndarray  # review index of each window
    n_tokens: list[int]  # whole-review token counts, per review

    @property
    def n_reviews(self) -> int:
        """How many reviews the windows came from."""
        return len(self.n_tokens)

    def windows_per_review(self) -> np.ndarray:
        """Number of windows of each review."""
        return np.bincount(self.owner, minlength=self.n_reviews)


def split_windows(
    token_ids: list[list[int]],
    prefix: list[int],
    suffix: list[int],
    max_length: int,
    overlap: int | None = None,
) -> Windows:
    """Cut each review's ids (without special tokens) into overlapping full-length windows."""
    budget = max_length - len(prefix) - len(suffix)
    ids_out: list[list[int]] = []
    owner: list[int] = []
    for i, ids in enumerate(token_ids):
        for start in window_starts(len(ids), budget, overlap):
            ids_out.append(prefix + ids[start : start + budget] + suffix)
            owner.append(i)
    return Windows(ids_out, np.asarray(owner, dtype=np.int64), [len(ids) for ids in token_ids])


def chunk_windows(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    overlap: int | None = None,
) -> Windows:
    """Clean and tokenize reviews whole, then cut them into overlapping full-length windows."""
    token_ids, max_length = _tokenize_whole(tokenizer, texts, max_length)
    prefix, suffix = special_tokens(tokenizer)
    return split_windows(token_ids, prefix, suffix, max_length, overlap)


def average_by_review(window_probs: np.ndarray, owner: np.ndarray, n_reviews: int) -> np.ndarray:
    """Mean of the window probabilities of each review; shape ``(n_reviews, classes)``."""
    counts = np.bincount(owner, minlength=n_reviews).astype(np.float64)
    if (counts == 0).any():
        raise ValueError("every review needs at least one window")
    out = np.zeros((n_reviews, window_probs.shape[1]), dtype=np.float64)
    np.add.at(out, owner, window_probs)
    return out / counts[:, None]


def chunked_probabilities(
    windows: Windows, window_logits: np.ndarray, temperature: float
) -> np.ndarray:
    """Per-review probabilities: temperature-scaled softmax per window, averaged per review."""
    return average_by_review(softmax(window_logits, temperature), windows.owner, windows.n_reviews)
