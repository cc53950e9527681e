"""The evaluation report: the numbers it shows, ``misclassified.csv`` and ``report.md``.

Everything here works from per-review numbers (label, probability, token count, rating), so the
same code reports on any labelled data. The statistics live in :mod:`imdb_sentiment.metrics`,
the figures in :mod:`imdb_sentiment.evaluation.plots` (the ``plots`` extra; without it the
report is written without them) and W&B logging in :mod:`imdb_sentiment.tracking`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment import tracking
from imdb_sentiment.atomic import write_text
from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.evaluation import plots as plots_mod
from imdb_sentiment.metrics.calibration import calibration_summary
from imdb_sentiment.metrics.intervals import INTERVAL_METRICS, bootstrap_intervals
from imdb_sentiment.metrics.slices import length_bucket_labels, length_buckets, slice_metrics
from imdb_sentiment.text import DECISION_THRESHOLD, clean_text, label_name

if TYPE_CHECKING:
    import pandas as pd

Log = Callable[[str], None]

TOP_ERRORS = 50
REPORT_FILE = "report.md"
ERRORS_FILE = "misclassified.csv"
PLOTS_DIR = "plots"
ROBUSTNESS_FILE = "robustness.csv"


@dataclass
class ReportData:
    """Per-review numbers an evaluation report is built from."""

    labels: np.ndarray
    positive: np.ndarray  # calibrated positive-class probability
    uncalibrated: np.ndarray  # positive probability at T = 1
    n_tokens: list[int]
    budget: int  # tokens the model reads in one window (max_length less special tokens)
    ratings: np.ndarray | None = None
    temperature: float = 1.0
    long_reviews: str = "truncate"


def report_metrics(d: ReportData) -> dict[str, Any]:
    """Intervals, calibration and slices: the numbers the report and the model card show."""
    y = np.asarray(d.labels).astype(int)
    out: dict[str, Any] = {
        "intervals": bootstrap_intervals(y, d.positive),
        "calibration": calibration_summary(y, d.uncalibrated, d.positive, d.temperature),
    }
    buckets = length_buckets(d.n_tokens, d.budget, d.long_reviews)
    out["slices"] = {
        "by_length": slice_metrics(
            y, d.positive, buckets, order=length_bucket_labels(d.budget, d.long_reviews)
        ),
    }
    if d.ratings is not None:
        out["slices"]["by_rating"] = slice_metrics(y, d.positive, [int(r) for r in d.ratings])
    return out


def misclassified(frame: pd.DataFrame, top: int = TOP_ERRORS) -> pd.DataFrame:
    """The ``top`` wrong predictions with the highest loss (most confidently wrong first)."""
    p1 = frame["positive_probability"].to_numpy(dtype=np.float64)
    y = frame["label"].to_numpy().astype(int)
    p_true = np.where(y == 1, p1, 1 - p1)
    wrong = frame.assign(loss=-np.log(np.clip(p_true, 1e-12, 1.0)))
    wrong = wrong[~wrong["correct"].astype(bool)]
    columns = [
        c
        for c in (
            "loss",
            "label",
            "predicted",
            "positive_probability",
            "n_tokens",
            "truncated",
            "rating",
            "text",
        )
        if c in wrong.columns
    ]
    return wrong.sort_values("loss", ascending=False).head(top)[columns].reset_index(drop=True)


# -------------------------------------------------------------------------------------- report.md


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def _snippet(text: str, limit: int = 160) -> str:
    flat = clean_text(str(text)).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _slice_table(rows: list[dict[str, Any]], heading: str) -> list[str]:
    lines = [
        f"| {heading} | reviews | accuracy | 95% interval | errors | mean confidence |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['slice']} | {r['n']:,} | {_fmt(r['accuracy'])} | "
            f"{_fmt(r['accuracy_low'], 3)} – {_fmt(r['accuracy_high'], 3)} | "
            f"{r['errors']:,} | {_fmt(r['mean_confidence'], 3)} |"
        )
    return lines


def _headline(metrics: dict[str, Any], title: str) -> list[str]:
    iv = metrics["intervals"]
    cal = metrics["calibration"]
    meta = iv.get("_meta", {})
    lines = [
        f"# Evaluation report: {title}",
        "",
        f"- data: {metrics.get('source', '?')}, {metrics['n']:,} reviews",
        f"- model reads: {metrics.get('truncation', '?')} truncation at "
        f"{metrics.get('max_length', '?')} tokens; long reviews: "
        f"{metrics.get('long_reviews', 'truncate')}",
        f"- decision threshold {DECISION_THRESHOLD} on the calibrated positive probability "
        f"(temperature {cal['temperature']:.3f})",
        "",
        "## Headline metrics",
        "",
        f"{int(meta.get('level', 0.95) * 100)}% percentile-bootstrap intervals "
        f"({int(meta.get('samples', 0)):,} resamples of the reviews).",
        "",
        "| metric | value | 95% interval |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {k} | {_fmt(iv[k]['value'])} | {_fmt(iv[k]['low'])} – {_fmt(iv[k]['high'])} |"
        for k in INTERVAL_METRICS
    ]
    lines += [
        f"| precision | {_fmt(metrics['precision'])} | |",
        f"| recall | {_fmt(metrics['recall'])} | |",
        f"| MCC | {_fmt(metrics['mcc'])} | |",
        f"| log loss | {_fmt(metrics['log_loss'])} | |",
        "",
    ]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    lines += [
        f"Confusion matrix: {tn:,} true negatives, {fp:,} false positives, "
        f"{fn:,} false negatives, {tp:,} true positives.",
        "",
    ]
    return lines


def _calibration(cal: dict[str, Any]) -> list[str]:
    return [
        "## Calibration",
        "",
        "Expected calibration error (15 equal-width confidence bins) and Brier score; "
        "lower is better.",
        "",
        "| probabilities | ECE | Brier |",
        "|---|---:|---:|",
        f"| uncalibrated (T = 1) | {_fmt(cal['ece_uncalibrated'])} | "
        f"{_fmt(cal['brier_uncalibrated'])} |",
        f"| calibrated (T = {cal['temperature']:.3f}) | {_fmt(cal['ece'])} | "
        f"{_fmt(cal['brier'])} |",
        "",
    ]


def _slices(slices: dict[str, Any]) -> list[str]:
    lines = [
        "## Accuracy by review length",
        "",
        "Token counts are of the whole review before cutting; the last bucket holds the "
        "reviews longer than one window of the model.",
        "",
    ]
    lines += _slice_table(slices["by_length"], "tokens")
    if "by_rating" in slices:
        lines += [
            "",
            "## Accuracy by star rating",
            "",
            "IMDB labels ratings 1-4 negative and 7-10 positive; errors concentrate near "
            "the middle.",
            "",
        ]
        lines += _slice_table(slices["by_rating"], "rating")
    return lines


def _robustness(rob: dict[str, Any] | None) -> list[str]:
    if not rob:
        return []
    lines = [
        "",
        "## Robustness",
        "",
        f"Perturbations generated from {rob.get('sampled_reviews', '?')} evaluated "
        "reviews (seeded).",
        "",
        "| check | kind | cases | pass rate | mean probability shift |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in rob["checks"].items():
        rate = "n/a" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}"
        lines.append(
            f"| {name} | {r['kind']} | {r['cases']:,} | {rate} | {_fmt(r['mean_shift'], 4)} |"
        )
    return [*lines, "", f"Failing cases: `{rob.get('file', ROBUSTNESS_FILE)}`."]


def _worst_errors(errors: pd.DataFrame, confusion: list[list[int]]) -> list[str]:
    lines = [
        "",
        f"## Most confidently wrong ({len(errors)} of "
        f"{confusion[0][1] + confusion[1][0]:,} errors)",
        "",
        f"The full list with texts is in `{ERRORS_FILE}`.",
        "",
        "| loss | true | P(positive) | tokens | review |",
        "|---:|---|---:|---:|---|",
    ]
    for _, r in errors.head(10).iterrows():
        lines.append(
            f"| {r['loss']:.2f} | {label_name(int(r['label']))} | "
            f"{r['positive_probability']:.3f} | "
            f"{int(r['n_tokens']) if 'n_tokens' in r else '?'} | "
            f"{_snippet(r['text'])} |"
        )
    return lines


def render_report(
    metrics: dict[str, Any], errors: pd.DataFrame, plots: list[Path], title: str, out_dir: Path
) -> str:
    """``report.md``: what was measured, how sure we are, where the model fails."""
    lines = [
        *_headline(metrics, title),
        *_calibration(metrics["calibration"]),
        *_slices(metrics["slices"]),
        *_robustness(metrics.get("robustness")),
        *_worst_errors(errors, metrics["confusion_matrix"]),
    ]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [
            f"![{p.stem.replace('_', ' ')}]({p.relative_to(out_dir).as_posix()})" for p in plots
        ]
    return "\n".join(lines) + "\n"


def write_report(
    out_dir: Path,
    frame: pd.DataFrame,
    data: ReportData,
    metrics: dict[str, Any],
    title: str,
    *,
    plots: bool = True,
    log: Log = lambda _m: None,
) -> list[Path]:
    """Write ``misclassified.csv``, the PNG plots and ``report.md`` into ``out_dir``.

    ``metrics`` must already hold :func:`report_metrics`' keys. The report is also logged to
    the active W&B run, if any. Returns the files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = misclassified(frame)
    errors_path = out_dir / ERRORS_FILE
    errors.to_csv(errors_path, index=False)
    pngs: list[Path] = []
    if plots:
        try:
            pngs = plots_mod.make_plots(
                out_dir / PLOTS_DIR,
                data.labels,
                data.positive,
                data.uncalibrated,
                metrics["slices"]["by_length"],
                title,
            )
        except MissingExtraError as exc:
            log(f"warning: no plots in the report: {exc}")
    report_path = out_dir / REPORT_FILE
    write_text(report_path, render_report(metrics, errors, pngs, title, out_dir))
    tracking.log_eval_report(title, metrics, errors, pngs)
    return [errors_path, *pngs, report_path]
