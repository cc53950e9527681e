#!/usr/bin/env python
"""Wall and CPU time of one drift refresh of ``serve``'s window (``monitoring/window.py``).

A refresh profiles the window's texts with an fp32 PyTorch copy of the model (token counts of
the whole reviews, a forward pass for the predicted label and confidence, mean-pooled embeddings)
and runs the drift tests against the run's reference (KS, Fisher, vocabulary PSI and an MMD test
with 999 permutations on at most 500 embeddings). This script times the two parts for each
window size, as the server's thread runs them, after one untimed warm-up refresh:

    .venv/bin/python scripts/bench_drift_refresh.py --run runs/minilm-2k --data data/imdb \\
        --sizes 500,100 --out docs/results/drift_refresh.json

The run needs ``reference/`` (``imdb-sentiment drift RUN --build-reference``); the window is
filled with reviews of the prepared ``train`` split after those the run trained on.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from imdb_sentiment.atomic import write_json
from imdb_sentiment.hardware import cpu_name
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.monitoring.drift import MMD_SAMPLE, compare
from imdb_sentiment.monitoring.profile import profile_texts
from imdb_sentiment.monitoring.reference import Reference, load_reference


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def refresh_times(
    predictor: Predictor, reference: Reference, texts: list[str], seed: int
) -> dict[str, Any]:
    profile, p_wall, p_cpu = timed(
        lambda: profile_texts(predictor, texts, embed_limit=MMD_SAMPLE, seed=seed)
    )
    _, c_wall, c_cpu = timed(lambda: compare(reference, profile, seed=seed))
    return {
        "window": len(texts),
        "wall_s": round(p_wall + c_wall, 2),
        "cpu_s": round(p_cpu + c_cpu, 2),
        "profile_wall_s": round(p_wall, 2),
        "profile_cpu_s": round(p_cpu, 2),
        "tests_wall_s": round(c_wall, 2),
        "tests_cpu_s": round(c_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sizes", default="500,100")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    texts = pd.read_parquet(args.data / "train.parquet", columns=["text"])["text"].tolist()
    pool = texts[-(max(sizes) * 2 + 100) :]  # the run trained on the first reviews
    reference = load_reference(args.run)
    # As serve's window: fp32, the server's inference batch size left at its default.
    predictor = Predictor.from_path(args.run, precision="fp32")
    refresh_times(predictor, reference, pool[:100], seed=0)  # warm-up: first calls allocate
    rows = [
        refresh_times(predictor, reference, pool[k : k + n], seed=k + 1)
        for k, n in enumerate(sizes)
    ]
    result = {
        "what": "one drift refresh of serve's window: profile (fp32 forward pass) + drift tests",
        "command": "python scripts/bench_drift_refresh.py --run runs/minilm-2k --data data/imdb "
        f"--sizes {args.sizes}",
        "cpu": cpu_name(),
        "cores": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "model": "MiniLM-L6 fine-tuned on 2,000 reviews, 128 tokens, head+tail",
        "reference_reviews": len(reference.array("confidence")),
        "rows": rows,
    }
    print(result)
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
