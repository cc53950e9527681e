#!/usr/bin/env python
"""False alarms and detections of ``imdb-sentiment drift`` on real IMDB text.

Builds the run's reference (a seeded sample of its validation reviews), then tests batches
drawn from the validation reviews the reference does not hold: unchanged (false alarms) and
shifted (first sentence only, a 90/10 positive/negative label balance, typos and random casing),
and batches of text from another domain, alone and mixed into reviews. Each pool of texts is
profiled once and batches are subsets of it, so the model runs once per text.

The other-domain text is ``--other-domain FILE`` (.txt one text per line, .csv, .jsonl or
.parquet with ``--text-column``); without it, the long descriptions of the Debian packages
installed on the machine (dpkg's status file), English technical prose, where there is one.

Example (CPU; a trained run whose config names the prepared data):

    python scripts/drift_eval.py --run runs/drift-ref --batch-sizes 100 500 --draws 20
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imdb_sentiment.atomic import write_json
from imdb_sentiment.hardware import cpu_name
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.modeling.tokenization import whole_token_ids
from imdb_sentiment.monitoring.drift import compare
from imdb_sentiment.monitoring.profile import TextProfile, profile_texts
from imdb_sentiment.monitoring.reference import (
    Reference,
    build_reference,
    load_reference,
    reference_texts,
)
from imdb_sentiment.runs import run_data_dir

DPKG_STATUS = Path("/var/lib/dpkg/status")
OTHER = "package descriptions (other domain)"
MIXED = "20% package descriptions, 80% reviews"
Pool = tuple[TextProfile, list[Counter]]
Draw = Callable[[np.random.Generator, int], TextProfile]


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.replace("<br />", " "), maxsplit=1)[0]


def noisy(text: str, rng: random.Random) -> str:
    """About one word in five gets a swapped, dropped or doubled letter; casing is random."""
    words = []
    for word in text.split():
        if len(word) > 3 and rng.random() < 0.2:
            i = rng.randrange(len(word) - 1)
            word = rng.choice(
                [
                    word[:i] + word[i + 1] + word[i] + word[i + 2 :],
                    word[:i] + word[i + 1 :],
                    word[:i] + word[i] + word[i:],
                ]
            )
        words.append(word.upper() if rng.random() < 0.3 else word)
    return " ".join(words)


def package_descriptions(path: Path = DPKG_STATUS) -> list[str]:
    """The synopsis and long description of every package in a dpkg status file, one text
    each, deduplicated, in file order."""
    texts: dict[str, None] = {}
    for block in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        match = re.search(r"^Description: (.*)\n?((?:[ \t].*\n?)*)", block, re.MULTILINE)
        if not match:
            continue
        body = " ".join(line.strip() for line in match.group(2).splitlines() if line.strip() != ".")
        texts[f"{match.group(1).strip()}. {body}".strip()] = None
    return list(texts)


def other_domain_texts(path: Path | None, column: str) -> tuple[list[str], str]:
    """The other-domain texts and what they are."""
    if path is not None:
        from imdb_sentiment.data.files import read_texts_file

        return read_texts_file(path, text_column=column), str(path)
    if not DPKG_STATUS.is_file():
        sys.exit(
            f"error: {DPKG_STATUS} is not here (not a Debian or Ubuntu system); pass "
            "--other-domain FILE with non-review English text, one text per line"
        )
    return (
        package_descriptions(),
        "long descriptions of the installed Debian packages (dpkg status file)",
    )


def pool_profile(predictor: Predictor, texts: list[str]) -> Pool:
    profile = profile_texts(predictor, texts, embed_limit=len(texts))
    counts = [Counter(ids) for ids in whole_token_ids(predictor.tokenizer, texts)]
    return profile, counts


def subset(pool: Pool, rows: np.ndarray) -> TextProfile:
    profile, counts = pool
    total: Counter = Counter()
    for i in rows:
        total.update(counts[i])
    return TextProfile(
        profile.n_tokens[rows],
        profile.truncated[rows],
        profile.unk_share[rows],
        total,
        profile.positive[rows],
        profile.embeddings[rows],
    )


def mixed(a: TextProfile, b: TextProfile) -> TextProfile:
    """One batch holding the texts of two."""
    return TextProfile(
        np.concatenate([a.n_tokens, b.n_tokens]),
        np.concatenate([a.truncated, b.truncated]),
        np.concatenate([a.unk_share, b.unk_share]),
        a.token_counts + b.token_counts,
        np.concatenate([a.positive, b.positive]),
        np.concatenate([a.embeddings, b.embeddings]),
    )


def shifts(pools: dict[str, Pool], labels: np.ndarray) -> dict[str, Draw]:
    """Each shift: how to draw a batch of ``size`` from the profiled pools."""

    def plain(name: str) -> Draw:
        n = len(pools[name][0].positive)
        return lambda rng, size: subset(pools[name], rng.choice(n, size, replace=False))

    def balance(rng: np.random.Generator, size: int) -> TextProfile:
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        k = round(0.9 * size)
        return subset(
            pools["same"],
            np.concatenate(
                [rng.choice(pos, k, replace=False), rng.choice(neg, size - k, replace=False)]
            ),
        )

    def mix(rng: np.random.Generator, size: int) -> TextProfile:
        k = round(0.2 * size)
        return mixed(plain("same")(rng, size - k), plain("other")(rng, k))

    return {
        "none (same distribution)": plain("same"),
        "first sentence only": plain("first"),
        "90/10 positive/negative": balance,
        "typos and casing": plain("noisy"),
        OTHER: plain("other"),
        MIXED: mix,
    }


def run_draws(
    reference: Reference, draw: Draw, size: int, draws: int, alpha: float
) -> dict[str, Any]:
    """Alarm rate, per-signal alarm rates and every p-value (PSI for the vocabulary)."""
    rng = np.random.default_rng(size)
    alarms, per_signal = 0, Counter()
    values: dict[str, list[float]] = {}
    for _ in range(draws):
        report = compare(reference, draw(rng, size), alpha=alpha)
        alarms += report["drifted"]
        for s in report["signals"]:
            per_signal[s["name"]] += s["drifted"]
            value = s["statistic"] if s["p_value"] is None else s["p_value"]
            values.setdefault(s["name"], []).append(float(f"{value:.4g}"))
    return {
        "batch_size": size,
        "draws": draws,
        "alarm_rate": alarms / draws,
        "per_signal": {k: v / draws for k, v in per_signal.items() if v},
        "p_values": values,
    }


def held_out(run: Path, reference_size: int) -> pd.DataFrame:
    """Validation reviews the reference does not hold (none shares a text with it)."""
    in_reference = set(reference_texts(run, reference_size)[0])
    validation = pd.read_parquet(run_data_dir(run) / "validation.parquet")
    return validation[~validation["text"].isin(in_reference)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument(
        "--reference-size",
        type=int,
        default=1000,
        help="validation reviews in the reference; the rest are the batch pool",
    )
    parser.add_argument(
        "--other-domain",
        type=Path,
        default=None,
        help="non-review texts [default: the dpkg status file's descriptions]",
    )
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--json", type=Path, default=Path("docs/results/drift_cpu.json"))
    parser.add_argument(
        "--plots",
        type=Path,
        default=Path("docs"),
        help="folder for drift_detection.png and drift_pvalues.png",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plots from --json without measuring"
    )
    args = parser.parse_args()
    if not args.plot_only:
        measure(args)
    plot(args.json, args.plots)


def measure(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    build_reference(args.run, limit=args.reference_size)
    reference = load_reference(args.run)
    held = held_out(args.run, args.reference_size)
    other, other_source = other_domain_texts(args.other_domain, args.text_column)
    rng = random.Random(0)
    predictor = Predictor.from_path(args.run, precision="fp32")
    texts = held["text"].tolist()
    pools = {
        "same": pool_profile(predictor, texts),
        "first": pool_profile(predictor, [first_sentence(t) for t in texts]),
        "noisy": pool_profile(predictor, [noisy(t, rng) for t in texts]),
        "other": pool_profile(predictor, other),
    }
    results: list[dict[str, Any]] = []
    for size in args.batch_sizes:
        for shift, draw in shifts(pools, held["label"].to_numpy()).items():
            pool = len(other) if shift == OTHER else len(texts)
            if size > pool:
                print(f"skipping {shift} at {size}: the pool holds {pool} texts", flush=True)
                continue
            results.append(
                {"shift": shift, **run_draws(reference, draw, size, args.draws, args.alpha)}
            )
            print({k: v for k, v in results[-1].items() if k != "p_values"}, flush=True)
    write_json(
        args.json,
        {
            "command": f"python scripts/drift_eval.py --run {args.run} --batch-sizes "
            f"{' '.join(map(str, args.batch_sizes))} --draws {args.draws}",
            "run": str(args.run),
            "reference_reviews": reference.payload["n_reviews"],
            "held_out_pool": len(held),
            # The installed packages change with the machine: the hash says which texts these were.
            "other_domain": {
                "source": other_source,
                "texts": len(other),
                "sha256": hashlib.sha256("\n".join(other).encode()).hexdigest(),
            },
            "alpha": args.alpha,
            "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            "seconds": round(time.perf_counter() - start, 1),
            "results": results,
        },
    )


def plot(results_json: Path, folder: Path) -> None:
    """Alarm rate per shift and batch size, and each signal's p-values at the smallest size."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results_json.read_text(encoding="utf-8"))
    rows = data["results"]
    sizes = sorted({r["batch_size"] for r in rows})
    names = list(dict.fromkeys(r["shift"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    height = 0.8 / len(sizes)
    for j, size in enumerate(sizes):
        rate = {r["shift"]: r["alarm_rate"] for r in rows if r["batch_size"] == size}
        y = np.arange(len(names)) + j * height
        ax.barh(y, [rate.get(n, np.nan) for n in names], height, label=f"batch of {size}")
    ax.axvline(data["alpha"], color="k", ls="--", lw=1, label=f"alpha {data['alpha']}")
    ax.set_yticks(np.arange(len(names)) + height * (len(sizes) - 1) / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"alarm rate over {rows[0]['draws']} batches")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(folder / "drift_detection.png", dpi=90)
    _plot_p_values(plt, data, names, sizes[0], folder / "drift_pvalues.png")


def _plot_p_values(plt: Any, data: dict[str, Any], names: list[str], size: int, path: Path) -> None:
    rows = {r["shift"]: r for r in data["results"] if r["batch_size"] == size}
    signals = [s for s in rows[names[0]]["p_values"] if s != "vocabulary"]
    fig, axes = plt.subplots(1, len(signals), figsize=(11, 3.4), sharey=True)
    floor = 1e-12  # p-values under this are drawn at it
    threshold = data["alpha"] / (len(signals))
    for ax, signal in zip(axes, signals, strict=True):
        for i, name in enumerate(names):
            p = np.maximum(rows[name]["p_values"][signal], floor) if name in rows else []
            jitter = np.random.default_rng(i).uniform(-0.25, 0.25, len(p))
            ax.scatter(-np.log10(p), i + jitter, s=6, alpha=0.6)
        ax.axvline(-np.log10(threshold), color="k", ls="--", lw=1)
        ax.set_xlim(-0.3, 12.5)
        ax.set_title(signal, fontsize=8)
        ax.set_xlabel("-log10 p", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(range(len(names)), [textwrap.fill(n, 22) for n in names], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"p-values of each test, batches of {size} (dashed: alpha/{len(signals)}; "
        f"right of it is an alarm; p < 1e-12 drawn at 12)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
