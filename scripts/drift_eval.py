#!/usr/bin/env python
"""False alarms and detections of ``imdb-sentiment drift`` on real IMDB text.

Builds the run's reference (its validation reviews), then tests batches drawn from the
validation reviews the reference does not hold: unchanged (false alarms) and shifted (first
sentence only, a 90/10 positive/negative label balance, typos and random casing). Each pool of
reviews is profiled once and batches are subsets of it, so the model runs once per review.

Example (CPU; a trained run whose config names the prepared data):

    python scripts/drift_eval.py --run /tmp/drift-runs/ref --batch-sizes 100 500 --draws 20 \\
        --json docs/results/drift_cpu.json
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from collections import Counter
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
from imdb_sentiment.monitoring.reference import build_reference, load_reference
from imdb_sentiment.runs import run_data_dir


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.replace("<br />", " "), maxsplit=1)[0]


def noisy(text: str, rng: random.Random) -> str:
    """About one word in five gets a swapped, dropped or doubled letter; casing is random."""
    words = []
    for word in text.split():
        if len(word) > 3 and rng.random() < 0.2:
            i = rng.randrange(len(word) - 1)
            word = rng.choice([word[:i] + word[i + 1] + word[i] + word[i + 2:],
                               word[:i] + word[i + 1:], word[:i] + word[i] + word[i:]])
        words.append(word.upper() if rng.random() < 0.3 else word)
    return " ".join(words)


def pool_profile(predictor: Predictor, texts: list[str]) -> tuple[TextProfile, list[Counter]]:
    profile = profile_texts(predictor, texts, embed_limit=len(texts))
    counts = [Counter(ids) for ids in whole_token_ids(predictor.tokenizer, texts)]
    return profile, counts


def subset(profile: TextProfile, counts: list[Counter], rows: np.ndarray) -> TextProfile:
    total: Counter = Counter()
    for i in rows:
        total.update(counts[i])
    return TextProfile(profile.n_tokens[rows], profile.truncated[rows], profile.unk_share[rows],
                       total, profile.positive[rows], profile.embeddings[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--json", type=Path, default=Path("docs/results/drift_cpu.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    build_reference(args.run)
    reference = load_reference(args.run)
    ref_texts = set(pd.read_parquet(args.run / "validation_predictions.parquet")["text"])
    validation = pd.read_parquet(run_data_dir(args.run) / "validation.parquet")
    held = validation[~validation["text"].isin(ref_texts)].reset_index(drop=True)
    rng = random.Random(0)
    predictor = Predictor.from_path(args.run, precision="fp32")
    texts = held["text"].tolist()
    pools = {
        "none (same distribution)": pool_profile(predictor, texts),
        "first sentence only": pool_profile(predictor, [first_sentence(t) for t in texts]),
        "typos and casing": pool_profile(predictor, [noisy(t, rng) for t in texts]),
    }
    labels = held["label"].to_numpy()
    results: list[dict[str, Any]] = []
    for size in args.batch_sizes:
        for shift, (profile, counts) in [*pools.items(), ("90/10 positive/negative",
                                                           pools["none (same distribution)"])]:
            draw_rng = np.random.default_rng(size)
            alarms, per_signal = 0, Counter()
            for _ in range(args.draws):
                if shift.startswith("90/10"):
                    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
                    k = round(0.9 * size)
                    rows = np.concatenate([draw_rng.choice(pos, k, replace=False),
                                           draw_rng.choice(neg, size - k, replace=False)])
                else:
                    rows = draw_rng.choice(len(texts), size, replace=False)
                report = compare(reference, subset(profile, counts, rows), alpha=args.alpha)
                alarms += report["drifted"]
                per_signal.update(s["name"] for s in report["signals"] if s["drifted"])
            results.append({"shift": shift, "batch_size": size, "draws": args.draws,
                            "alarm_rate": alarms / args.draws,
                            "per_signal": {k: v / args.draws for k, v in per_signal.items()}})
            print(results[-1], flush=True)
    write_json(args.json, {
        "command": f"python scripts/drift_eval.py --run {args.run} --batch-sizes "
                   f"{' '.join(map(str, args.batch_sizes))} --draws {args.draws}",
        "run": str(args.run), "reference_reviews": reference.payload["n_reviews"],
        "held_out_pool": len(held), "alpha": args.alpha,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "seconds": round(time.perf_counter() - start, 1),
        "results": results})


if __name__ == "__main__":
    main()
