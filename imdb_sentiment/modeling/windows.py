"""Reading reviews longer than the model's window: overlapping chunks, probabilities averaged.

``truncate`` (the default) cuts each review once with the model's trained strategy
(:func:`imdb_sentiment.modeling.cut`). ``chunks`` slides a window of the model's full length
over the review with a quarter-window overlap, scores every window, and averages the window
probabilities per review, so nothing is left unread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imdb_sentiment.errors import ConfigError

LONG_REVIEW_MODES = ("truncate", "chunks")


def check_mode(mode: str) -> str:
    """Validate a ``--long-reviews`` value."""
    if mode not in LONG_REVIEW_MODES:
        raise ConfigError(
            f"--long-reviews must be one of {', '.join(LONG_REVIEW_MODES)}, got {mode!r}"
        )
    return mode


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
        return len(self.n_tokens)

    def windows_per_review(self) -> np.ndarray:
        return np.bincount(self.owner, minlength=self.n_reviews)


def split_windows(token_ids: list[list[int]], prefix: list[int], suffix: list[int],
                  max_length: int, overlap: int | None = None) -> Windows:
    """Cut each review's ids (without special tokens) into overlapping full-length windows."""
    budget = max_length - len(prefix) - len(suffix)
    ids_out: list[list[int]] = []
    owner: list[int] = []
    for i, ids in enumerate(token_ids):
        for start in window_starts(len(ids), budget, overlap):
            ids_out.append(prefix + ids[start : start + budget] + suffix)
            owner.append(i)
    return Windows(ids_out, np.asarray(owner, dtype=np.int64), [len(ids) for ids in token_ids])


def average_by_review(window_probs: np.ndarray, owner: np.ndarray, n_reviews: int) -> np.ndarray:
    """Mean of the window probabilities of each review; shape ``(n_reviews, classes)``."""
    counts = np.bincount(owner, minlength=n_reviews).astype(np.float64)
    if (counts == 0).any():
        raise ValueError("every review needs at least one window")
    out = np.zeros((n_reviews, window_probs.shape[1]), dtype=np.float64)
    np.add.at(out, owner, window_probs)
    return out / counts[:, None]


def chunk_windows(tokenizer: object, texts: list[str], max_length: int,
                  overlap: int | None = None) -> Windows:
    """Tokenize reviews whole and cut them into windows the way the model was built to read."""
    from imdb_sentiment.modeling.loading import _quiet_transformers
    from imdb_sentiment.modeling.tokenization import special_tokens

    _quiet_transformers()
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < max_length:
        max_length = model_max
    prefix, suffix = special_tokens(tokenizer)  # type: ignore[arg-type]
    raw = tokenizer(list(texts), add_special_tokens=False, truncation=False,  # type: ignore[operator]
                    verbose=False)
    return split_windows(raw["input_ids"], prefix, suffix, max_length, overlap)


def chunked_probabilities(windows: Windows, window_logits: np.ndarray, temperature: float,
                          softmax: Callable[[np.ndarray, float], np.ndarray]) -> np.ndarray:
    """Per-review probabilities: temperature-scaled softmax per window, averaged per review."""
    return average_by_review(softmax(window_logits, temperature), windows.owner,
                             windows.n_reviews)
