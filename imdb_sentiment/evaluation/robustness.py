"""Behavioural checks (CheckList-style, Ribeiro et al. 2020) generated from the evaluated reviews.

- ``typos`` (invariance): a few character typos in random words must not flip the label.
- ``neutral_sentence`` (invariance): appending a neutral sentence, taken from another review
  of the same data, must not flip the label.
- ``negation`` (directional): negating a clearly positive sentence found in a positive review
  ("the acting was superb" -> "the acting was not superb") must lower its positive probability.

Everything is seeded, so two models are checked on the same cases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imdb_sentiment.text import DECISION_THRESHOLD

Proba = Callable[[list[str]], np.ndarray]
"""Texts in, positive-class probabilities (shape ``(n,)``) out."""

POSITIVE_WORDS = (
    "great", "excellent", "wonderful", "brilliant", "superb", "amazing", "fantastic", "good",
    "beautiful", "enjoyable", "outstanding", "perfect", "fun", "funny", "hilarious", "moving",
    "touching", "charming", "delightful", "terrific", "impressive", "masterpiece", "best",
    "entertaining", "fascinating", "gripping", "stunning", "lovely", "solid", "fine", "nice",
    "memorable", "powerful", "incredible", "awesome", "magnificent", "marvelous", "marvellous",
    "love", "loved", "like", "liked", "enjoyed", "recommend", "favorite", "favourite",
    "classic", "genius", "worth", "well", "strong", "clever", "witty", "engaging", "masterful",
)
NEGATIVE_WORDS = (
    "bad", "awful", "terrible", "horrible", "boring", "dull", "worst", "waste", "poor",
    "stupid", "annoying", "ridiculous", "lame", "weak", "mess", "disappointing", "disappointed",
    "pointless", "cheesy", "hate", "hated", "dislike", "fails", "failed", "unfunny", "painful",
    "tedious", "pathetic", "garbage", "crap", "sucks", "mediocre", "predictable", "silly",
    "worse", "laughable", "unwatchable", "bland", "forgettable", "clumsy", "awkward", "wooden",
)
NEGATION_WORDS = ("not", "no", "never", "n't", "nothing", "nobody", "neither", "nor", "hardly",
                  "without", "but", "however", "although", "though")
_POLAR = frozenset(POSITIVE_WORDS + NEGATIVE_WORDS)
_NEGATORS = frozenset(NEGATION_WORDS)
_WORD = re.compile(r"[A-Za-z']+")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|<br\s*/?>\s*(?:<br\s*/?>\s*)*", re.IGNORECASE)
_ADVERBS = r"(?:(?:a|an|really|very|truly|simply|quite|so|just|absolutely|pretty|extremely|" \
           r"such|genuinely|utterly|incredibly|thoroughly)\s+){0,3}"
_ADJECTIVES = ("great", "excellent", "wonderful", "brilliant", "superb", "amazing", "fantastic",
               "good", "beautiful", "enjoyable", "outstanding", "perfect", "fun", "funny",
               "hilarious", "moving", "touching", "charming", "delightful", "terrific",
               "impressive", "masterpiece", "entertaining", "fascinating", "gripping", "stunning",
               "lovely", "memorable", "powerful", "incredible", "awesome", "magnificent",
               "marvelous", "marvellous", "engaging", "masterful", "clever", "witty")
_COPULA = re.compile(
    r"\b(is|was|are|were)\s+(" + _ADVERBS + r"(?:" + "|".join(_ADJECTIVES) + r")\b)",
    re.IGNORECASE,
)
_VERBS = {"loved": "love", "liked": "like", "enjoyed": "enjoy", "adored": "adore"}
_VERB = re.compile(r"\b(I|we)\s+(really\s+)?(" + "|".join(_VERBS) + r")\b", re.IGNORECASE)
_KEYBOARD = {  # QWERTY neighbours, for realistic substitutions
    "a": "qwsz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}


@dataclass
class Case:
    """One generated test case and how the model did on it."""

    check: str
    kind: str  # "invariance" or "directional"
    original: str
    perturbed: str
    p_original: float
    p_perturbed: float
    passed: bool


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
        pool = [f"I watched it on a {day} evening in {year}." for day, year in
                (("Monday", 2004), ("Friday", 1998), ("Sunday", 2010))]
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


def positive_sentences(texts: Sequence[str], labels: Sequence[int], rng: random.Random,
                       limit: int) -> list[str]:
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


# ---------------------------------------------------------------------------------------- checks


def _summary(cases: list[Case], kind: str) -> dict[str, Any]:
    shifts = [c.p_perturbed - c.p_original for c in cases]
    passed = sum(c.passed for c in cases)
    return {
        "kind": kind,
        "cases": len(cases),
        "passed": passed,
        "pass_rate": passed / len(cases) if cases else None,
        "mean_shift": float(np.mean(shifts)) if shifts else float("nan"),
    }


def run_checks(proba: Proba, texts: Sequence[str], labels: Sequence[int], *,
               samples: int = 200, seed: int = 0,
               original: Sequence[float] | None = None) -> tuple[dict[str, Any], list[Case]]:
    """Run the three checks on ``samples`` seeded reviews of ``texts``.

    ``original`` may hold the positive probabilities already computed for ``texts`` (saves one
    pass). Returns a summary (pass rates per check) and every case.
    """
    rng = random.Random(seed)
    n = len(texts)
    idx = sorted(rng.sample(range(n), min(samples, n)))
    picked = [texts[i] for i in idx]
    if original is not None:
        p_orig = np.asarray([original[i] for i in idx], dtype=np.float64)
    else:
        p_orig = np.asarray(proba(list(picked)), dtype=np.float64)
    cases: list[Case] = []

    typo_texts = [add_typos(t, rng) for t in picked]
    pool = neutral_pool(texts, rng)
    appended = []
    for t in picked:
        extra = rng.choice(pool)
        tries = 0
        while extra in t and tries < 5:  # never append a review's own sentence
            extra, tries = rng.choice(pool), tries + 1
        appended.append(t.rstrip() + " " + extra)
    p_new = np.asarray(proba(typo_texts + appended), dtype=np.float64)
    for name, perturbed, probs in (("typos", typo_texts, p_new[: len(picked)]),
                                   ("neutral_sentence", appended, p_new[len(picked) :])):
        for t, q, p0, p1 in zip(picked, perturbed, p_orig, probs, strict=True):
            cases.append(Case(name, "invariance", t, q, float(p0), float(p1),
                              bool((p0 >= DECISION_THRESHOLD) == (p1 >= DECISION_THRESHOLD))))

    positives = positive_sentences(texts, labels, rng, samples)
    if positives:
        negated = [negate(s) or s for s in positives]
        p = np.asarray(proba(positives + negated), dtype=np.float64)
        for s, q, p0, p1 in zip(positives, negated, p[: len(positives)], p[len(positives) :],
                                strict=True):
            cases.append(Case("negation", "directional", s, q, float(p0), float(p1),
                              bool(p1 < p0)))

    checks = {
        "typos": _summary([c for c in cases if c.check == "typos"], "invariance"),
        "neutral_sentence": _summary([c for c in cases if c.check == "neutral_sentence"],
                                     "invariance"),
        "negation": _summary([c for c in cases if c.check == "negation"], "directional"),
    }
    summary = {"sampled_reviews": len(picked), "seed": seed, "neutral_pool": len(pool),
               "checks": checks}
    return summary, cases


def cases_frame(cases: list[Case]) -> Any:
    """Cases as a DataFrame, failures first (what a reviewer wants to read)."""
    import pandas as pd

    frame = pd.DataFrame([asdict(c) for c in cases],
                         columns=["check", "kind", "original", "perturbed", "p_original",
                                  "p_perturbed", "passed"])
    return frame.sort_values(["passed", "check"], kind="stable").reset_index(drop=True)
