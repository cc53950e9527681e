"""The drift report's figures: batch against reference, written as PNG files beside
``drift.json``.

Matplotlib is the ``plots`` extra: it is imported only when a figure is drawn, and without it
:func:`drift_plots` raises :class:`MissingExtraError` so the report can go on without figures.
The headless setup and the atomic PNG write are shared with the evaluation report's figures
through :mod:`imdb_sentiment.plotting` (monitoring may not import evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.metrics.intervals import wilson_interval
from imdb_sentiment.plotting import pyplot, save_png

if TYPE_CHECKING:
    from imdb_sentiment.monitoring.profile import TextProfile
    from imdb_sentiment.monitoring.reference import Reference

TOKEN_LENGTH_PNG = "token_length.png"
CONFIDENCE_PNG = "confidence.png"
RATES_PNG = "rates.png"
SIGNALS_PNG = "signals.png"
CAPTIONS = {
    TOKEN_LENGTH_PNG: "Token length per review, batch against reference (ECDF)",
    CONFIDENCE_PNG: "Confidence of the predicted label, batch against reference",
    RATES_PNG: "Predicted positive rate and truncated share, with 95% intervals",
    SIGNALS_PNG: "Every signal against its threshold",
}
"""Alt text of each figure in ``report.md``."""
P_FLOOR = 1e-16
"""p-values below this (scipy returns some as 0) are drawn at it, so the log axis stays finite."""
_REF, _BATCH = "tab:blue", "tab:orange"
_OK, _DRIFT = "tab:green", "tab:red"


def _signal(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["signals"] if s["name"] == name)


def _test_line(s: dict[str, Any]) -> str:
    verdict = "DRIFT" if s["drifted"] else "ok"
    return (
        f"{s['test']}: statistic {s['statistic']:.3g}, p {s['p_value']:.3g} "
        f"(threshold {s['threshold']:.3g}): {verdict}"
    )


def _ecdf(ax: Any, values: np.ndarray, label: str, colour: str) -> None:
    x = np.sort(values)
    ax.step(
        x,
        np.arange(1, len(x) + 1) / len(x),
        where="post",
        color=colour,
        label=f"{label} (n={len(x):,}, median {np.median(x):.0f})",
    )


def token_length_figure(
    plt: Any, ref: np.ndarray, batch: np.ndarray, max_length: int | None, signal: dict[str, Any]
) -> Any:
    """ECDFs of whole-review token counts; KS's statistic is their largest vertical gap."""
    fig, ax = plt.subplots(figsize=(6, 4))
    # Lengths span one word to thousands of tokens: a log axis shows both ends.
    _ecdf(ax, np.maximum(ref, 1), "reference", _REF)
    _ecdf(ax, np.maximum(batch, 1), "batch", _BATCH)
    if max_length:
        ax.axvline(max_length, color="grey", linestyle=":", label=f"max length {max_length}")
    ax.set_xscale("log")
    ax.set_xlabel("tokens per review (whole review)")
    ax.set_ylabel("share of reviews at or below")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Token length\n{_test_line(signal)}", fontsize=9)
    return fig


def confidence_figure(plt: Any, ref: np.ndarray, batch: np.ndarray, signal: dict[str, Any]) -> Any:
    """Histograms (as densities, so batch and reference sizes compare) of the predicted label's
    probability."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.5, 1.0, 21)
    for values, name, colour in ((ref, "reference", _REF), (batch, "batch", _BATCH)):
        ax.hist(
            np.clip(values, 0.5, 1.0),
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.8,
            color=colour,
            label=f"{name} (n={len(values):,}, mean {np.mean(values):.3f})",
        )
    ax.set_xlabel("confidence of the predicted label")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Confidence\n{_test_line(signal)}", fontsize=9)
    return fig


def rates_figure(plt: Any, groups: list[tuple[str, np.ndarray, np.ndarray, dict[str, Any]]]) -> Any:
    """Per proportion signal, the reference and batch shares with 95% Wilson intervals."""
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.38
    for g, (_name, ref, batch, _signal) in enumerate(groups):
        for k, (flags, colour, label) in enumerate(
            ((ref, _REF, "reference"), (batch, _BATCH, "batch"))
        ):
            hits, n = int(np.sum(flags)), len(flags)
            share = hits / n if n else float("nan")
            low, high = wilson_interval(hits, n)
            x = g + (k - 0.5) * width
            ax.bar(
                x,
                share,
                width=width * 0.9,
                color=colour,
                alpha=0.85,
                yerr=[[share - low], [high - share]],
                capsize=4,
                label=label if g == 0 else None,
            )
            ax.text(x, high + 0.02, f"{share:.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(
        range(len(groups)),
        [
            f"{name}\nFisher p {s['p_value']:.3g}: {'DRIFT' if s['drifted'] else 'ok'}"
            for name, _r, _b, s in groups
        ],
        fontsize=8,
    )
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of reviews (95% Wilson interval)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Predicted positive rate and truncated share", fontsize=9)
    return fig


def _p_value_axis(ax: Any, tested: list[dict[str, Any]], alpha: float) -> None:
    p = np.maximum([s["p_value"] for s in tested], P_FLOOR)
    colours = [_DRIFT if s["drifted"] else _OK for s in tested]
    rows = np.arange(len(tested))
    ax.hlines(rows, p, 1.0, color=colours, alpha=0.5)
    ax.scatter(p, rows, color=colours, zorder=3)
    for row, s, value in zip(rows, tested, p, strict=True):
        off_scale = " (off scale)" if s["p_value"] < P_FLOOR else ""
        ax.annotate(
            f"{s['p_value']:.2g}{off_scale}",
            (value, row),
            xytext=(4, 4),
            textcoords="offset points",
            ha="left",
            fontsize=7,
        )
    threshold = tested[0]["threshold"] if tested else alpha
    ax.axvline(
        threshold, color="black", linestyle="--", label=f"alpha/{len(tested)} = {threshold:.3g}"
    )
    ax.set_xscale("log")
    ax.set_xlim(min(float(p.min()) if tested else 1.0, threshold) / 5, 3.0)
    ax.set_ylim(len(tested) - 0.4, -0.6)
    ax.set_yticks(rows, [s["name"] for s in tested], fontsize=8)
    ax.set_xlabel("p-value (log scale; left of the line drifts)")
    ax.legend(fontsize=8, loc="lower left")


def _score_axis(ax: Any, scored: list[dict[str, Any]]) -> None:
    for i, s in enumerate(scored):
        ax.barh(i, s["statistic"], height=0.5, color=_DRIFT if s["drifted"] else _OK, alpha=0.85)
        ax.annotate(
            f"{s['statistic']:.3g}",
            (s["statistic"], i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
        ax.axvline(
            s["threshold"],
            color="black",
            linestyle="--",
            label=f"threshold {s['threshold']:g}" if i == 0 else None,
        )
    ax.set_yticks(range(len(scored)), [s["name"] for s in scored], fontsize=8)
    ax.set_xlim(
        0,
        max([1.0] + [2 * s["threshold"] for s in scored] + [1.2 * s["statistic"] for s in scored]),
    )
    ax.set_ylim(-0.6, len(scored) - 0.4 + 0.5)
    ax.set_xlabel(" / ".join(sorted({s["test"] for s in scored})) or "score")
    if scored:
        ax.legend(fontsize=8, loc="upper right")


def signals_figure(plt: Any, report: dict[str, Any]) -> Any:
    """Every signal against its threshold: p-values on a log axis (left of the line drifts),
    scores without a p-value (the vocabulary PSI) on their own axis (right of it drifts)."""
    tested = [s for s in report["signals"] if s["p_value"] is not None]
    scored = [s for s in report["signals"] if s["p_value"] is None]
    fig, (ax, axs) = plt.subplots(
        2,
        1,
        figsize=(6.5, 1.6 + 0.45 * len(report["signals"])),
        gridspec_kw={"height_ratios": [max(len(tested), 1), max(len(scored), 1) + 0.5]},
    )
    _p_value_axis(ax, tested, report["alpha"])
    _score_axis(axs, scored)
    verdict = "DRIFT" if report["drifted"] else "no drift"
    ax.set_title(
        f"Drift signals: {verdict} ({report['n_reviews']:,} reviews, "
        f"alpha {report['alpha']:g}; red: drifted)",
        fontsize=9,
    )
    return fig


def drift_plots(
    out_dir: Path, reference: Reference, batch: TextProfile, report: dict[str, Any]
) -> list[Path]:
    """Token length, confidence, proportions and the signal summary, as PNG files in
    ``out_dir``; the paths written."""
    plt = pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    rates = [
        (
            "predicted positive rate",
            reference.array("predicted_positive").astype(bool),
            batch.predicted_positive,
            _signal(report, "predicted_positive_rate"),
        ),
        (
            "truncated share",
            reference.array("truncated").astype(bool),
            batch.truncated,
            _signal(report, "truncated_share"),
        ),
    ]
    return [
        save_png(
            plt,
            token_length_figure(
                plt,
                reference.array("n_tokens"),
                batch.n_tokens,
                reference.payload.get("max_length"),
                _signal(report, "token_length"),
            ),
            out_dir / TOKEN_LENGTH_PNG,
        ),
        save_png(
            plt,
            confidence_figure(
                plt, reference.array("confidence"), batch.confidence, _signal(report, "confidence")
            ),
            out_dir / CONFIDENCE_PNG,
        ),
        save_png(plt, rates_figure(plt, rates), out_dir / RATES_PNG),
        save_png(plt, signals_figure(plt, report), out_dir / SIGNALS_PNG),
    ]
