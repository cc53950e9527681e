"""Robustness checks generated from the data: typos, neutral sentences, negation."""

from __future__ import annotations

import random

import numpy as np
import pytest

from imdb_sentiment.evaluation import robustness as rb


def test_add_typos_is_seeded_and_small() -> None:
    text = "The cinematography was absolutely wonderful and the soundtrack memorable."
    a = rb.add_typos(text, random.Random(1))
    assert a == rb.add_typos(text, random.Random(1))
    assert a != text
    assert len(a.split()) == len(text.split())
    assert a[0] == "T"
    assert rb.add_typos("ok so", random.Random(0)) == "ok so"  # no word long enough


@pytest.mark.parametrize(
    ("sentence", "negated"),
    [
        ("The acting is superb.", "The acting is not superb."),
        ("This film was a masterpiece.", "This film was not a masterpiece."),
        ("The cast were really very good.", "The cast were not really very good."),
        ("I loved every minute of it.", "I did not love every minute of it."),
        ("We really enjoyed it.", "We did not enjoy it."),
    ],
)
def test_negate(sentence: str, negated: str) -> None:
    assert rb.negate(sentence) == negated


def test_clearly_positive_rejects_mixed_and_negative() -> None:
    assert rb.clearly_positive("The score is wonderful.")
    assert not rb.clearly_positive("The score is wonderful but the plot is dull.")
    assert not rb.clearly_positive("The film is not great.")
    assert not rb.clearly_positive("A film about a dog.")


def test_neutral_pool_comes_from_the_data() -> None:
    texts = [
        "Great film! The story takes place in Boston during the winter of 1972. Loved it.",
        "Awful.<br /><br />It was shot over six weeks in a small village near Rome.",
        "Boring and bad.",
    ]
    pool = rb.neutral_pool(texts, random.Random(0))
    assert set(pool) == {
        "The story takes place in Boston during the winter of 1972.",
        "It was shot over six weeks in a small village near Rome.",
    }
    assert all(rb.is_neutral(s) for s in pool)
    assert rb.neutral_pool(["Bad.", "Great!"], random.Random(0))  # generated fallback


def _lexicon_proba(texts: list[str]) -> np.ndarray:
    """A toy model: positive words up, negative words and 'not' down."""
    out = []
    for t in texts:
        words = t.lower().replace(".", " ").split()
        score = (
            sum(w in rb.POSITIVE_WORDS for w in words)
            - sum(w in rb.NEGATIVE_WORDS for w in words)
            - 2 * words.count("not")
        )
        out.append(1 / (1 + np.exp(-score)))
    return np.asarray(out)


def test_run_checks_reports_pass_rates() -> None:
    rng = random.Random(0)
    texts, labels = [], []
    for i in range(40):
        if i % 2:
            texts.append(
                f"The music was wonderful. It was filmed in {1950 + i} near the old "
                "harbour at night. I loved it."
            )
            labels.append(1)
        else:
            texts.append(
                "The plot was boring and the acting awful. It was filmed in "
                f"{1950 + i} near the old harbour at night."
            )
            labels.append(0)
    rng.shuffle(texts)
    summary, cases = rb.run_checks(_lexicon_proba, texts, labels, samples=30, seed=3)
    checks = summary["checks"]
    assert summary["sampled_reviews"] == 30
    assert checks["typos"]["cases"] == 30 and checks["neutral_sentence"]["cases"] == 30
    assert checks["neutral_sentence"]["pass_rate"] == 1.0  # the toy model ignores neutral text
    assert checks["negation"]["cases"] > 0
    assert checks["negation"]["pass_rate"] == 1.0  # 'not' always lowers the toy score
    assert 0.0 <= checks["typos"]["pass_rate"] <= 1.0
    frame = rb.cases_frame(cases)
    assert list(frame.columns)[:2] == ["check", "kind"]
    assert len(frame) == 60 + checks["negation"]["cases"]


def test_run_checks_without_positive_sentences() -> None:
    summary, _ = rb.run_checks(
        _lexicon_proba, ["bad dull film overall", "awful plot here"], [0, 0], samples=5
    )
    assert summary["checks"]["negation"]["cases"] == 0
    assert summary["checks"]["negation"]["pass_rate"] is None
