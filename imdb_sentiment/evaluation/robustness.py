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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from imdb_sentiment.evaluation.perturb import (
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    add_typos,
    clearly_positive,
    is_neutral,
    negate,
    neutral_pool,
    positive_sentences,
    sentences,
)
from imdb_sentiment.text import DECISION_THRESHOLD

# The generators live in perturb.py; they stay importable from here, where the checks are.
__all__ = [
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "Case",
    "Proba",
    "add_typos",
    "cases_frame",
    "clearly_positive",
    "is_neutral",
    "negate",
    "neutral_pool",
    "positive_sentences",
    "run_checks",
    "sentences",
]

Proba = Callable[[list[str]], np.ndarray]
"""Texts in, positive-class probabilities (shape ``(n,)``) out."""


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


def run_checks(
    proba: Proba,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    samples: int = 200,
    seed: int = 0,
    original: Sequence[float] | None = None,
) -> tuple[dict[str, Any], list[Case]]:
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
    cases, pool = _invariance_cases(proba, picked, p_orig, texts, rng)
    cases += _negation_cases(proba, positive_sentences(texts, labels, rng, samples))

    checks = {
        "typos": _summary([c for c in cases if c.check == "typos"], "invariance"),
        "neutral_sentence": _summary(
            [c for c in cases if c.check == "neutral_sentence"], "invariance"
        ),
        "negation": _summary([c for c in cases if c.check == "negation"], "directional"),
    }
    summary = {
        "sampled_reviews": len(picked),
        "seed": seed,
        "neutral_pool": len(pool),
        "checks": checks,
    }
    return summary, cases


def _invariance_cases(
    proba: Proba,
    picked: list[str],
    p_orig: np.ndarray,
    texts: Sequence[str],
    rng: random.Random,
) -> tuple[list[Case], list[str]]:
    """The typo and neutral-sentence cases of the picked reviews, and the neutral pool used."""
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
    cases: list[Case] = []
    for name, perturbed, probs in (
        ("typos", typo_texts, p_new[: len(picked)]),
        ("neutral_sentence", appended, p_new[len(picked) :]),
    ):
        for t, q, p0, p1 in zip(picked, perturbed, p_orig, probs, strict=True):
            same = bool((p0 >= DECISION_THRESHOLD) == (p1 >= DECISION_THRESHOLD))
            cases.append(Case(name, "invariance", t, q, float(p0), float(p1), same))
    return cases, pool


def _negation_cases(proba: Proba, positives: list[str]) -> list[Case]:
    """Each clearly positive sentence against its negation: the probability must drop."""
    if not positives:
        return []
    negated = [negate(s) or s for s in positives]
    p = np.asarray(proba(positives + negated), dtype=np.float64)
    n = len(positives)
    return [
        Case("negation", "directional", s, q, float(p0), float(p1), bool(p1 < p0))
        for s, q, p0, p1 in zip(positives, negated, p[:n], p[n:], strict=True)
    ]


def cases_frame(cases: list[Case]) -> Any:
    """Cases as a DataFrame, failures first (what a reviewer wants to read)."""
    import pandas as pd

    frame = pd.DataFrame(
        [asdict(c) for c in cases],
        columns=["check", "kind", "original", "perturbed", "p_original", "p_perturbed", "passed"],
    )
    return frame.sort_values(["passed", "check"], kind="stable").reset_index(drop=True)
