"""What a batch of reviews looks like to a model: lengths, truncation, unknown tokens,
vocabulary, predicted labels, confidence and sentence embeddings.

The reference and every batch compared with it are profiled by :func:`profile_texts`, one code
path, so a difference between them is the texts' and never the measuring's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.inference.cls_only import all_positions
from imdb_sentiment.inference.predictor import check_texts
from imdb_sentiment.metrics.classification import softmax
from imdb_sentiment.modeling.tokenization import whole_token_ids
from imdb_sentiment.text import predicted_labels

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.modeling.tokenization import Encoded


@dataclass
class TextProfile:
    """Per-review measurements of a batch (arrays line up with its reviews)."""

    n_tokens: np.ndarray  # int: tokens of the whole review
    truncated: np.ndarray  # bool: cut to the model's length
    unk_share: np.ndarray  # float: share of the review's tokens that are the unknown token
    token_counts: Counter[int]  # token id -> occurrences over the whole batch
    positive: np.ndarray  # float: calibrated positive probability
    embeddings: np.ndarray  # float32 (n_sampled, hidden): mean-pooled last hidden states

    @property
    def predicted_positive(self) -> np.ndarray:
        """Whether each review is labelled positive by the one decision rule."""
        return np.asarray(predicted_labels(self.positive), dtype=bool)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted label."""
        return np.where(self.predicted_positive, self.positive, 1.0 - self.positive)


def _vocabulary(predictor: Predictor, texts: Sequence[str]) -> tuple[Counter[int], np.ndarray]:
    ids = whole_token_ids(predictor.tokenizer, texts)
    unk = predictor.tokenizer.unk_token_id
    counts: Counter[int] = Counter()
    shares = np.zeros(len(ids), dtype=np.float64)
    for i, row in enumerate(ids):
        counts.update(row)
        if unk is not None and row:
            shares[i] = row.count(unk) / len(row)
    return counts, shares


def _forward(
    predictor: Predictor, texts: Sequence[str], embed_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Encoded]:
    """Calibrated probabilities of every review and embeddings of ``embed_rows``, one pass."""
    import torch

    module = predictor.model
    if module is None:
        from imdb_sentiment.errors import ConfigError

        raise ConfigError("drift profiles need the torch backend (embeddings come from it)")
    enc = predictor.encode(texts)
    logits = np.zeros((len(texts), 2), dtype=np.float32)
    wanted = set(embed_rows.tolist())
    pooled: dict[int, np.ndarray] = {}
    device = next(module.parameters()).device
    for idx, ids, mask in predictor._batches(enc):
        # Every position of the last layer: the embedding is their mean.
        with torch.inference_mode(), all_positions(module):
            out = module(
                input_ids=torch.from_numpy(ids).to(device),
                attention_mask=torch.from_numpy(mask).to(device),
                output_hidden_states=True,
            )
        logits[idx] = out.logits.float().cpu().numpy()
        hidden = out.hidden_states[-1].float()
        weights = torch.from_numpy(mask).to(device).unsqueeze(-1).float()
        means = ((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)).cpu().numpy()
        for row, i in enumerate(idx):
            if int(i) in wanted:
                pooled[int(i)] = means[row]
    embeddings = (
        np.stack([pooled[int(i)] for i in embed_rows])
        if len(embed_rows)
        else np.zeros((0, 0), dtype=np.float32)
    )
    return softmax(logits, predictor.settings.temperature)[:, 1], embeddings.astype(np.float32), enc


def profile_texts(
    predictor: Predictor, texts: Sequence[str], *, embed_limit: int = 2000, seed: int = 0
) -> TextProfile:
    """Profile ``texts`` as ``predictor`` reads them; embeddings for at most ``embed_limit``
    reviews, drawn at random with ``seed`` when there are more."""
    check_texts(texts)
    n = len(texts)
    rows = np.arange(n)
    if n > embed_limit:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=embed_limit, replace=False))
    positive, embeddings, enc = _forward(predictor, texts, rows)
    counts, unk_share = _vocabulary(predictor, texts)
    return TextProfile(
        n_tokens=np.asarray(enc.n_tokens, dtype=np.int64),
        truncated=np.asarray(enc.truncated, dtype=bool),
        unk_share=unk_share,
        token_counts=counts,
        positive=np.asarray(positive, dtype=np.float64),
        embeddings=embeddings,
    )
