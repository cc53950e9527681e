"""Perturbations for the behavioural checks (``robustness``): character typos, neutral
sentences taken from the reviews themselves, and negation of clearly positive sentences.

Every function draws from the ``random.Random`` it is given, so the checks stay seeded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

POSITIVE_WORDS = (
    "great",
    "excellent",
    "wonderful",
    "brilliant",
    "superb",
    "amazing",
    "fantastic",
    "good",
    "beautiful",
    "enjoyable",
    "outstanding",
    "perfect",
    "fun",
    "funny",
    "hilarious",
    "moving",
    "touching",
    "charming",
    "delightful",
    "terrific",
    "impressive",
    "masterpiece",
    "best",
    "entertaining",
    "fascinating",
    "gripping",
    "stunning",
    "lovely",
    "solid",
    "fine",
    "nice",
    "memorable",
    "powerful",
    "incredible",
    "awesome",
    "magnificent",
    "marvelous",
    "marvellous",
    "love",
    "loved",
    "like",
    "liked",
    "enjoyed",
    "recommend",
    "favorite",
    "favourite",
    "classic",
    "genius",
    "worth",
    "well",
    "strong",
    "clever",
    "witty",
    "engaging",
    "masterful",
)
NEGATIVE_WORDS = (
    "bad",
    "awful",
    "terrible",
    "horrible",
    "boring",
    "dull",
    "worst",
    "waste",
    "poor",
    "stupid",
    "annoying",
    "ridiculous",
    "lame",
    "weak",
    "mess",
    "disappointing",
    "disappointed",
    "pointless",
    "cheesy",
    "hate",
    "hated",
    "dislike",
    "fails",
    "failed",
    "unfunny",
    "painful",
    "tedious",
    "pathetic",
    "garbage",
    "crap",
    "sucks",
    "mediocre",
    "predictable",
    "silly",
    "worse",
    "laughable",
    "unwatchable",
    "bland",
    "forgettable",
    "clumsy",
    "awkward",
    "wooden",
)
NEGATION_WORDS = (
    "not",
    "no",
    "never",
    "n't",
    "nothing",
    "nobody",
    "neither",
    "nor",
    "hardly",
    "without",
    "but",
    "however",
    "although",
    "though",
)
_POLAR = frozenset(POSITIVE_WORDS + NEGATIVE_WORDS)
_NEGATORS = frozenset(NEGATION_WORDS)
_WORD = re.compile(r"[A-Za-z']+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|<br\s*/?>\s*(?:<br\s*/?>\s*)*", re.IGNORECASE)
_ADVERBS = (
    r"(?:(?:a|an|really|very|truly|simply|quite|so|just|absolutely|pretty|extremely|"
    r"such|genuinely|utterly|incredibly|thoroughly)\s+){0,3}"
)
_NOT_PREDICATES = frozenset(
    {"best", "solid", "fine", "nice", "love", "loved", "like", "liked", "enjoyed", "recommend"}
    | {"favorite", "favourite", "classic", "genius", "worth", "well", "strong"}
)
_ADJECTIVES = tuple(w for w in POSITIVE_WORDS if w not in _NOT_PREDICATES)
"""Positive words that read as a predicate after "is"/"was" ("the film was superb"), so
:func:`negate` can turn them into "was not superb"."""
_COPULA = re.compile(
    r"\b(is|was|are|were)\s+(" + _ADVERBS + r"(?:" + "|".join(_ADJECTIVES) + r")\b)",
    re.IGNORECASE,
)
_VERBS = {"loved": "love", "liked": "like", "enjoyed": "enjoy", "adored": "adore"}
_VERB = re.compile(r"\b(I|we)\s+(really\s+)?(" + "|".join(_VERBS) + r")\b", re.IGNORECASE)
_KEYBOARD = {  # QWERTY neighbours, for realistic substitutions
    "a": "qwsz",
    "b": "vghn",
    "c": "xdfv",
    "d": "serfcx",
    "e": "wsdr",
    "f": "drtgvc",
    "g": "ftyhbv",
    "h": "gyujnb",
    "i": "ujko",
    "j": "huikmn",
    "k": "jiolm",
    "l": "kop",
    "m": "njk",
    "n": "bhjm",
    "o": "iklp",
    "p": "ol",
    "q": "wa",
    "r": "edft",
    "s": "awedxz",
    "t": "rfgy",
    "u": "yhji",
    "v": "cfgb",
    "w": "qase",
    "x": "zsdc",
    "y": "tghu",
    "z": "asx",
}


# ----------------------------------------------------------------------------------- generators


def _typo_word(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)  # keep the first letter: people rarely mistype it
    op = rng.choice(("swap", "delete", "double", "neighbour"))
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "delete":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    c = word[i].lower()
    sub = rng.choice(_KEYBOARD.get(c, "e"))
    return word[:i] + (sub.upper() if word[i].isupper() else sub) + word[i + 1 :]


def add_typos(text: str, rng: random.Random, rate: float = 0.05, at_most: int = 10) -> str:
    """Misspell about ``rate`` of the words of four or more letters (at least one)."""
    spans = [m.span() for m in re.finditer(r"[A-Za-z]{4,}", text)]
    if not spans:
        return text
    k = min(at_most, max(1, round(rate * len(spans))))
    chosen = sorted(rng.sample(spans, min(k, len(spans))), reverse=True)
    out = text
    for start, end in chosen:
        out = out[:start] + _typo_word(out[start:end], rng) + out[end:]
    return out


def sentences(text: str) -> list[str]:
    """Split a review into sentences (on . ! ? and IMDB's <br /> line breaks)."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


def _words(sentence: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(sentence)]


def is_neutral(sentence: str) -> bool:
    """A plain statement: 6-25 words, no opinion word, no negation, no ! or ?."""
    words = _words(sentence)
    if not 6 <= len(words) <= 25 or sentence[-1:] not in ".":
        return False
    if any(w in _POLAR or w in _NEGATORS or w.endswith("n't") for w in words):
        return False
    return "<" not in sentence and '"' not in sentence


def neutral_pool(texts: Sequence[str], rng: random.Random, size: int = 200) -> list[str]:
    """Neutral sentences taken from the reviews themselves (plot and circumstance statements)."""
    pool: list[str] = []
    order = list(range(len(texts)))
    rng.shuffle(order)
    for i in order:
        for s in sentences(texts[i]):
            if is_neutral(s):
                pool.append(s)
                break
        if len(pool) >= size:
            break
    if not pool:
        # No usable sentence in the data (tiny or synthetic sets): a generated plain statement.
        pool = [
            f"I watched it on a {day} evening in {year}."
            for day, year in (("Monday", 2004), ("Friday", 1998), ("Sunday", 2010))
        ]
    return pool


def negate(sentence: str) -> str | None:
    """Negate the positive claim of a sentence, or None when there is none to negate.

    "The acting is superb." -> "The acting is not superb."; "I loved it." -> "I did not love it."
    """
    if _COPULA.search(sentence):
        return _COPULA.sub(lambda m: f"{m.group(1)} not {m.group(2)}", sentence, count=1)
    m = _VERB.search(sentence)
    if m:
        verb = _VERBS[m.group(3).lower()]
        return sentence[: m.start()] + f"{m.group(1)} did not {verb}" + sentence[m.end() :]
    return None


def clearly_positive(sentence: str) -> bool:
    """A short sentence with a positive claim we can negate and nothing that muddies it."""
    words = _words(sentence)
    if not 3 <= len(words) <= 30:
        return False
    if any(w in NEGATIVE_WORDS or w in _NEGATORS or w.endswith("n't") for w in words):
        return False
    return negate(sentence) is not None


def positive_sentences(
    texts: Sequence[str], labels: Sequence[int], rng: random.Random, limit: int
) -> list[str]:
    """Clearly positive sentences from positive reviews, at most one per review."""
    found: list[str] = []
    order = [i for i in range(len(texts)) if int(labels[i]) == 1]
    rng.shuffle(order)
    for i in order:
        for s in sentences(texts[i]):
            if clearly_positive(s):
                found.append(s)
                break
        if len(found) >= limit:
            break
    return found
