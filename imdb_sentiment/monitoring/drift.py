"""Drift tests: does a batch of reviews come from the distribution of the run's reference?

Six signals get a p-value from scipy (Kolmogorov-Smirnov, Fisher's exact test, Mann-Whitney U, and a
permutation test of the embeddings' maximum mean discrepancy). The family-wise false-alarm rate
is held at ``alpha`` by Bonferroni: each of them drifts when ``p < alpha / 6``. The vocabulary
is scored by the population stability index, with the usual 0.25 threshold for a major shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from imdb_sentiment.atomic import write_json, write_text
from imdb_sentiment.errors import DataError, MissingExtraError
from imdb_sentiment.monitoring.plots import CAPTIONS, drift_plots

if TYPE_CHECKING:
    from imdb_sentiment.monitoring.profile import TextProfile
    from imdb_sentiment.monitoring.reference import Reference

MIN_BATCH = 30
"""Fewer reviews than this give tests too weak to mean anything; refused."""
PSI_THRESHOLD = 0.25
MMD_SAMPLE = 500
MMD_RESAMPLES = 999
DRIFT_SCHEMA_VERSION = 1


@dataclass
class Signal:
    """One test's outcome."""

    name: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    reference: float
    batch: float


# Confidences closer than this are the same to a user. Compared at full precision, a model whose
# confidences cluster (a saturated classifier) is flagged by float noise alone: the same review
# scores a few ulps apart in another batch or on another CPU, and KS reads that as an ordering.
CONFIDENCE_RESOLUTION = 3  # decimals


def _ks(
    name: str, batch: np.ndarray, ref: np.ndarray, decimals: int | None = None
) -> tuple[str, str, float, float, float, float]:
    if decimals is not None:
        batch, ref = np.round(batch, decimals), np.round(ref, decimals)
    result = stats.ks_2samp(batch, ref)
    return (
        name,
        "kolmogorov-smirnov",
        float(result.statistic),
        float(result.pvalue),
        float(np.mean(ref)),
        float(np.mean(batch)),
    )


def _two_proportions(
    name: str, flags: np.ndarray, ref_flags: np.ndarray
) -> tuple[str, str, float, float, float, float]:
    # Fisher's exact test on the 2x2 table, not a binomial test against the reference share:
    # the reference is a sample too, and taking its share as exact raises false alarms.
    hits, ref_hits = int(flags.sum()), int(ref_flags.sum())
    table = [[hits, len(flags) - hits], [ref_hits, len(ref_flags) - ref_hits]]
    result = stats.fisher_exact(table)
    return (
        name,
        "fisher exact",
        float(flags.mean()),
        float(result.pvalue),
        float(ref_flags.mean()),
        float(flags.mean()),
    )


def _mann_whitney(
    name: str, batch: np.ndarray, ref: np.ndarray
) -> tuple[str, str, float, float, float, float]:
    if np.ptp(np.concatenate([batch, ref])) == 0:
        p_value, statistic = 1.0, 0.0  # every value equal: nothing can differ
    else:
        result = stats.mannwhitneyu(batch, ref, alternative="two-sided")
        p_value, statistic = float(result.pvalue), float(result.statistic)
    return name, "mann-whitney u", statistic, p_value, float(np.mean(ref)), float(np.mean(batch))


def mmd_test(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Squared maximum mean discrepancy (RBF kernel, median bandwidth) and its permutation
    p-value from :func:`scipy.stats.permutation_test`."""
    pooled = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(pooled**2, axis=1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    bandwidth = float(np.median(dist[np.triu_indices(len(pooled), k=1)])) or 1.0
    kernel = np.exp(-dist / bandwidth)

    def mmd(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        # Each row of a/b indexes one split of the pooled sample; with weights w (1/n_x on
        # x, -1/n_y on y) the biased squared MMD is w K w', computed for all splits at once.
        ia, ib = np.atleast_2d(a).astype(int), np.atleast_2d(b).astype(int)
        rows = np.arange(len(ia))[:, None]
        w = np.zeros((len(ia), len(pooled)))
        w[rows, ia] = 1.0 / ia.shape[1]
        w[rows, ib] = -1.0 / ib.shape[1]
        values = np.sum((w @ kernel) * w, axis=1)
        return values if np.ndim(a) > 1 else values[0]

    result = stats.permutation_test(
        (np.arange(len(x)), np.arange(len(x), len(pooled))),
        mmd,
        permutation_type="independent",
        n_resamples=MMD_RESAMPLES,
        alternative="greater",
        vectorized=True,
        batch=250,
        random_state=np.random.default_rng(seed),
    )
    return float(result.statistic), float(result.pvalue)


def psi(reference: Reference, batch_counts: dict[int, int]) -> float:
    """Population stability index of the batch's tokens over the reference's top-token bins."""
    vocab = reference.payload["vocabulary"]
    ids = vocab["token_ids"]
    ref = np.asarray([*vocab["counts"], vocab["other"]], dtype=np.float64)
    new = np.asarray([batch_counts.get(t, 0) for t in ids], dtype=np.float64)
    new = np.append(new, sum(batch_counts.values()) - new.sum())
    # Half a count in every bin keeps an empty bin from making the index infinite.
    p, q = (ref + 0.5) / (ref + 0.5).sum(), (new + 0.5) / (new + 0.5).sum()
    return float(np.sum((q - p) * np.log(q / p)))


def _sample(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(rows) <= size:
        return rows
    return rows[np.random.default_rng(seed).choice(len(rows), size=size, replace=False)]


def _univariate_tests(
    reference: Reference, batch: TextProfile
) -> list[Callable[[], tuple[str, str, float, float, float, float]]]:
    """The per-feature tests, each run lazily: (name, test, statistic, p, reference, batch)."""
    return [
        lambda: _ks("token_length", batch.n_tokens, reference.array("n_tokens")),
        lambda: _two_proportions(
            "truncated_share", batch.truncated, reference.array("truncated").astype(bool)
        ),
        lambda: _mann_whitney("unknown_token_rate", batch.unk_share, reference.array("unk_share")),
        lambda: _two_proportions(
            "predicted_positive_rate",
            batch.predicted_positive,
            reference.array("predicted_positive").astype(bool),
        ),
        lambda: _ks(
            "confidence", batch.confidence, reference.array("confidence"), CONFIDENCE_RESOLUTION
        ),
    ]


def compare(
    reference: Reference, batch: TextProfile, *, alpha: float = 0.05, seed: int = 0
) -> dict[str, Any]:
    """Test ``batch`` against ``reference``; the JSON-ready report (``drift.json``)."""
    if len(batch.positive) < MIN_BATCH:
        raise DataError(
            f"the batch holds {len(batch.positive)} reviews; drift tests need at least {MIN_BATCH}"
        )
    r = reference.payload
    tests = _univariate_tests(reference, batch)
    per_test = alpha / (len(tests) + 1)
    signals = []
    for run_test in tests:
        name, test, statistic, p_value, ref_value, batch_value = run_test()
        signals.append(
            Signal(
                name, test, statistic, p_value, per_test, p_value < per_test, ref_value, batch_value
            )
        )
    x = _sample(batch.embeddings, MMD_SAMPLE, seed)
    y = _sample(reference.embeddings, MMD_SAMPLE, seed + 1)
    statistic, p_value = mmd_test(x, y, seed)
    signals.append(
        Signal(
            "embedding",
            "mmd permutation (rbf)",
            statistic,
            p_value,
            per_test,
            p_value < per_test,
            0.0,
            statistic,
        )
    )
    score = psi(reference, dict(batch.token_counts))
    signals.append(
        Signal(
            "vocabulary",
            "population stability index",
            score,
            None,
            PSI_THRESHOLD,
            score > PSI_THRESHOLD,
            0.0,
            score,
        )
    )
    return {
        "schema_version": DRIFT_SCHEMA_VERSION,
        "n_reviews": len(batch.positive),
        "reference_reviews": r["n_reviews"],
        "alpha": alpha,
        "correction": f"bonferroni over {len(tests) + 1} p-values (each at alpha/"
        f"{len(tests) + 1}); vocabulary by PSI > {PSI_THRESHOLD}",
        "drifted": any(s.drifted for s in signals),
        "signals": [asdict(s) for s in signals],
    }


def report_markdown(report: dict[str, Any], source: str, images: list[str] | None = None) -> str:
    """The human-readable ``report.md`` of a drift report; ``images`` are PNG names in the
    report's folder, linked relative to it."""
    verdict = "DRIFT" if report["drifted"] else "no drift"
    lines = [
        f"# Drift report: {verdict}",
        "",
        f"Batch: {source} ({report['n_reviews']:,} reviews) against "
        f"{report['reference_reviews']:,} reference reviews. {report['correction']}.",
        "",
        "| signal | test | statistic | p-value | threshold | reference | batch | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in report["signals"]:
        p = "—" if s["p_value"] is None else f"{s['p_value']:.3g}"
        lines.append(
            f"| {s['name']} | {s['test']} | {s['statistic']:.4g} | {p} | "
            f"{s['threshold']:.3g} | {s['reference']:.4g} | {s['batch']:.4g} | "
            f"{'drift' if s['drifted'] else 'ok'} |"
        )
    if images:
        lines += ["", "## Plots"]
        for name in images:
            caption = CAPTIONS.get(name, name)
            lines += ["", f"![{caption}]({name})"]
    return "\n".join(lines) + "\n"


def check_batch(
    run: Path,
    texts: list[str],
    *,
    source: str,
    output: Path,
    alpha: float = 0.05,
    seed: int = 0,
    plots: bool = True,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[dict[str, Any], list[Path]]:
    """Profile ``texts`` with the run's model, test them against its reference and write
    the plots (unless ``plots`` is false), ``report.md`` and ``drift.json`` into ``output``;
    the report and the plots written."""
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.profile import profile_texts
    from imdb_sentiment.monitoring.reference import load_reference

    reference = load_reference(run)
    if len(texts) < MIN_BATCH:
        raise DataError(
            f"{source} holds {len(texts)} reviews; drift tests need at least {MIN_BATCH}"
        )
    predictor = Predictor.from_path(run, precision="fp32")
    profile = profile_texts(predictor, texts, embed_limit=MMD_SAMPLE, seed=seed)
    report = compare(reference, profile, alpha=alpha, seed=seed)
    report["source"] = source
    output.mkdir(parents=True, exist_ok=True)
    pngs: list[Path] = []
    if plots:
        try:
            pngs = drift_plots(output, reference, profile, report)
        except MissingExtraError as exc:
            log(f"warning: no plots in the drift report: {exc}")
    write_text(output / "report.md", report_markdown(report, source, [p.name for p in pngs]))
    # drift.json last: its presence marks a whole report, which the CLI refuses to overwrite.
    write_json(output / "drift.json", report)
    return report, pngs
