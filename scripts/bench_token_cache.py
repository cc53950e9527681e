"""Tokenizing a split vs reading it from the token cache, on a fresh copy of a prepared folder.

    python scripts/bench_token_cache.py --data data/imdb --model minilm --max-length 512 \
        --out docs/results/token_cache.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/imdb")
    parser.add_argument("--split", default="train")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--truncation", default="head+tail")
    parser.add_argument("--out", default="docs/results/token_cache.json")
    args = parser.parse_args()

    from imdb_sentiment.config import resolve
    from imdb_sentiment.data.splits import MANIFEST, load_split
    from imdb_sentiment.modeling.loading import load_tokenizer, resolve_model_name
    from imdb_sentiment.training.dataset import CACHE_DIR, encoded_reviews

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "imdb"
        data.mkdir()
        for name in (MANIFEST, f"{args.split}.parquet"):
            shutil.copyfile(Path(args.data) / name, data / name)
        cfg = resolve(
            overrides={
                "model.name": args.model,
                "data.dir": str(data),
                "model.max_length": args.max_length,
                "model.truncation": args.truncation,
            }
        )
        frame = load_split(data, args.split)
        tokenizer = load_tokenizer(resolve_model_name(args.model))
        rows = []
        for _ in range(2):  # a miss (tokenize and store), then a hit
            start = time.perf_counter()
            reviews = encoded_reviews(tokenizer, frame, cfg)
            first_batch = [reviews[i] for i in range(64)]  # as the loader reads them
            rows.append(
                {
                    "cache": reviews.cache,
                    "seconds": round(time.perf_counter() - start, 2),
                    "tokens": int(reviews.offsets[-1]),
                    "batch_rows": len(first_batch),
                }
            )
        size = sum(f.stat().st_size for f in (data / CACHE_DIR).glob("*.npz"))
    report = {
        "data": args.data,
        "split": args.split,
        "rows": len(frame),
        "model": args.model,
        "max_length": args.max_length,
        "truncation": args.truncation,
        "cache_file_mb": round(size / 2**20, 1),
        "runs": rows,
        "saved_seconds": round(rows[0]["seconds"] - rows[1]["seconds"], 2),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "note": "shared 2-core machine: other work ran on the same cores",
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
