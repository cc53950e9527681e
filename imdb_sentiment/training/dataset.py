"""Prepared reviews as the tokenized, map-style dataset ``Trainer`` reads, tokenized once.

Tokenizing the full training split whole (before the cut) is the slowest part of setting up a
run, and its result depends only on the reviews, the tokenizer and how reviews are cut. So the
ids are cached in ``<data dir>/.cache/tokens/<key>.npz`` and the next run with the same key
reads them back. The key covers:

- the reviews themselves (a sha256 of the exact rows used, in order: the prepared split's
  content and any sampling, and it cannot go stale when a split is prepared again),
- the tokenizer (name, class, a sha256 of its whole definition: vocabulary, normaliser, special
  tokens, and the longest input it takes),
- ``model.max_length``, ``model.truncation`` and the head tokens of head+tail,
- the code that turns text into ids (``text.py`` and ``modeling/tokenization.py``, hashed), so
  a change to cleaning or cutting never reads old ids.

The key is also stored inside the file and compared on reading, so one key's file is never
read for another. A file that cannot be read or does not match is rebuilt; a folder that
cannot be written leaves the run uncached. Only a prepared folder (one with ``manifest.json``)
gets a cache, and ``data.token_cache: false`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.config import Config
from imdb_sentiment.data.splits import MANIFEST
from imdb_sentiment.modeling.tokenization import encode, special_tokens

if TYPE_CHECKING:
    import pandas as pd

CACHE_FORMAT = 1
"""Bumped when the layout of a cache file changes."""
CACHE_DIR = Path(".cache") / "tokens"
"""Where, inside the data folder, cached ids live."""


class EncodedReviews:
    """Tokenized reviews as the map-style dataset Trainer expects (one dict per review).

    The ids of all reviews are held in one flat ``int32`` array with offsets (what the cache
    stores), so a cached split loads without building millions of Python ints up front.
    Padding is left to the collator, so each batch is only as wide as its longest review.
    """

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]] | tuple[np.ndarray, np.ndarray],
        labels: list[int],
        *,
        cache: str = "off",
    ) -> None:
        if isinstance(input_ids, tuple):
            self.flat, self.offsets = input_ids
        else:
            self.flat, self.offsets = _flatten(input_ids)
        self.labels = labels
        self.cache = cache
        """``hit``, ``miss`` (tokenized and stored), ``unwritable`` or ``off``."""

    def __len__(self) -> int:
        return len(self.labels)

    def ids(self, i: int) -> list[int]:
        """Review ``i``'s token ids, special tokens included."""
        return self.flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    @property
    def input_ids(self) -> list[list[int]]:
        """Every review's token ids."""
        return [self.ids(i) for i in range(len(self))]

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.ids(i)
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": self.labels[i]}


def _flatten(input_ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    offsets = np.zeros(len(input_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(
        (t for ids in input_ids for t in ids), dtype=np.int32, count=int(offsets[-1])
    )
    return flat, offsets


def encoded_reviews(tokenizer: Any, frame: pd.DataFrame, cfg: Config) -> EncodedReviews:
    """Tokenize ``frame``'s ``text`` the way the model will read it (``cfg.model``'s length and
    truncation, through the one text path in :func:`encode`), with its ``label`` column; read
    from and stored in the token cache unless ``data.token_cache`` is off."""
    m = cfg.model
    texts = frame["text"].tolist()
    labels = frame["label"].astype(int).tolist()
    # Only a prepared folder gets a cache: reviews from elsewhere never create data/imdb/.cache.
    if not cfg.data.token_cache or not (Path(cfg.data.dir).expanduser() / MANIFEST).is_file():
        enc = encode(tokenizer, texts, m.max_length, m.truncation, m.head_budget)
        return EncodedReviews(enc.input_ids, labels)
    key = cache_key(tokenizer, texts, cfg)
    path = cache_path(cfg.data.dir, key)
    cached = read_cache(path, key, len(texts))
    if cached is not None:
        return EncodedReviews(cached, labels, cache="hit")
    enc = encode(tokenizer, texts, m.max_length, m.truncation, m.head_budget)
    reviews = EncodedReviews(enc.input_ids, labels)
    reviews.cache = "miss" if write_cache(path, key, reviews) else "unwritable"
    return reviews


# ----------------------------------------------------------------------------- the cache


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the reviews in order (each length-prefixed, so no two lists collide)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What decides the ids a tokenizer produces: its name, class and a hash of its definition."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:  # a fast tokenizer: vocabulary, normaliser and all, as JSON
        state = json.loads(backend.to_str())
        # Truncation and padding are the last call's settings, not the tokenizer's: encode
        # always tokenizes whole and unpadded, so they never change the ids.
        state.pop("truncation", None)
        state.pop("padding", None)
        definition = json.dumps(state, sort_keys=True)
    else:
        definition = json.dumps(sorted(tokenizer.get_vocab().items()))
        definition += json.dumps(getattr(tokenizer, "init_kwargs", {}), sort_keys=True, default=str)
    prefix, suffix = special_tokens(tokenizer)
    return {
        "name": str(getattr(tokenizer, "name_or_path", "")),
        "class": type(tokenizer).__name__,
        "sha256": hashlib.sha256(definition.encode("utf-8")).hexdigest(),
        "special": [prefix, suffix],
        "model_max_length": int(min(getattr(tokenizer, "model_max_length", 0) or 0, 2**31)),
    }


def _code_digest() -> str:
    """sha256 of the modules that turn text into ids."""
    from imdb_sentiment import text
    from imdb_sentiment.modeling import tokenization

    h = hashlib.sha256()
    for module in (text, tokenization):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()


def cache_key(tokenizer: Any, texts: Sequence[str], cfg: Config) -> dict[str, Any]:
    """Everything the cached ids depend on (see the module docstring)."""
    m = cfg.model
    return {
        "format": CACHE_FORMAT,
        "reviews": {"rows": len(texts), "sha256": texts_digest(texts)},
        "tokenizer": tokenizer_identity(tokenizer),
        "max_length": m.max_length,
        "truncation": m.truncation,
        "head_tokens": m.head_budget if m.truncation == "head+tail" else None,
        "code": _code_digest(),
    }


def _key_json(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def cache_path(data_dir: str | Path, key: dict[str, Any]) -> Path:
    """The cache file of ``key`` inside ``data_dir``."""
    name = hashlib.sha256(_key_json(key).encode("utf-8")).hexdigest()[:40]
    return Path(data_dir).expanduser() / CACHE_DIR / f"{name}.npz"


def read_cache(path: Path, key: dict[str, Any], rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached ``(flat ids, offsets)`` for ``key``; None when absent, unreadable or not
    ``key``'s (a damaged file is rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != _key_json(key):
                return None
            flat, offsets = stored["ids"], stored["offsets"]
    except Exception:  # a truncated or foreign file raises zip, numpy or OS errors alike
        return None
    sound = (
        flat.dtype == np.int32
        and offsets.dtype == np.int64
        and offsets.shape == (rows + 1,)
        and offsets[0] == 0
        and offsets[-1] == flat.shape[0]
        and bool(np.all(np.diff(offsets) >= 0))
    )
    return (flat, offsets) if sound else None


def write_cache(path: Path, key: dict[str, Any], reviews: EncodedReviews) -> bool:
    """Store ``reviews``' ids under ``key`` in one rename; False when the folder is read-only."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, key=np.array(_key_json(key)), ids=reviews.flat, offsets=reviews.offsets)
        tmp.replace(path)
    except OSError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
