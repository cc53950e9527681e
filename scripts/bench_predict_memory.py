#!/usr/bin/env python
"""Peak memory and speed of ``imdb-sentiment predict --file ... --output ...`` on a large file.

Builds a file of real reviews (the prepared ``train`` split, then ``validation``, repeated from the
start when the two hold fewer than ``--n``), runs ``predict`` on it in a fresh subprocess, and
reports that process's peak RSS (``os.wait4``: the child's own maximum resident set, imports and
model included) and reviews per second over the whole command (start-up and model load included):

    .venv/bin/python scripts/bench_predict_memory.py \\
        --run runs/minilm-2k --data data/imdb --n 25000 --label after \\
        --out docs/results/predict_memory.json

``runs/minilm-2k`` is any run directory (``make demo DEMO_RUN=minilm-2k`` makes one) and
``data/imdb`` the folder ``imdb-sentiment download`` writes. Each call adds (or replaces) the arm
named ``--label`` in ``--out``, so a ``before`` arm measured on an older checkout and an
``after`` arm sit side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.atomic import write_json
from imdb_sentiment.hardware import cpu_name


def build_reviews(data: Path, n: int) -> tuple[pd.DataFrame, str]:
    """``n`` real reviews: train then validation, repeated from the start to reach ``n``."""
    parts = [
        pd.read_parquet(data / f"{split}.parquet", columns=["text"])
        for split in ("train", "validation")
        if (data / f"{split}.parquet").exists()
    ]
    pool = pd.concat(parts, ignore_index=True)
    repeats = -(-n // len(pool))
    frame = pd.concat([pool] * repeats, ignore_index=True).iloc[:n].reset_index(drop=True)
    source = f"{len(pool):,} distinct reviews (train + validation splits)" + (
        f", repeated to {n:,}" if n > len(pool) else ""
    )
    return frame, source


def write_input(frame: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:  # .txt: one review per line, as predict reads it
        path.write_text(
            "".join(" ".join(t.split()) + "\n" for t in frame["text"]), encoding="utf-8"
        )


def run_predict(
    run: str, source: Path, output: Path, extra: list[str], code: str | None
) -> dict[str, Any]:
    """Run predict once; the child's own peak RSS and wall time."""
    cmd = [
        sys.executable,
        "-m",
        "imdb_sentiment",
        "predict",
        "--model",
        str(Path(run).resolve()),
        "--file",
        str(source),
        "--output",
        str(output),
        *extra,
    ]
    env = dict(os.environ)
    if code:
        # An older copy of the package (e.g. `git archive HEAD imdb_sentiment | tar -x -C old`)
        # shadows the installed one; run from its folder so the working tree is not on the path.
        env["PYTHONPATH"] = str(Path(code).resolve())
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=source.parent,
    )
    # wait4 gives this child's rusage alone, not the maximum over every child so far.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"predict exited with {code}: {stderr.strip()[-500:]}")
    return {
        "command": " ".join(["imdb-sentiment", *cmd[3:5], run, *cmd[6:]]),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "stderr_tail": stderr.strip()[-300:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="Run directory to predict with.")
    parser.add_argument("--data", required=True, help="Prepared data folder (train/validation).")
    parser.add_argument("--n", type=int, default=25_000)
    parser.add_argument(
        "--input-format", default="parquet", choices=("parquet", "csv", "jsonl", "txt")
    )
    parser.add_argument("--output-format", default="csv", choices=("csv", "jsonl", "parquet"))
    parser.add_argument("--label", required=True, help="Name of this arm, e.g. before / after.")
    parser.add_argument("--predict-args", default="", help="Extra `predict` flags.")
    parser.add_argument(
        "--code",
        help="Folder holding another copy of the imdb_sentiment package "
        "to run instead of the installed one (the 'before' arm).",
    )
    parser.add_argument("--out", default="predict_memory.json")
    args = parser.parse_args()

    frame, source = build_reviews(Path(args.data), args.n)
    with tempfile.TemporaryDirectory() as tmp:
        reviews = Path(tmp) / f"reviews.{args.input_format}"
        write_input(frame, reviews)
        output = Path(tmp) / f"predictions.{args.output_format}"
        del frame
        arm = run_predict(args.run, reviews, output, args.predict_args.split(), args.code)
        rows = len(
            pd.read_parquet(output)
            if output.suffix == ".parquet"
            else pd.read_csv(output)
            if output.suffix == ".csv"
            else pd.read_json(output, lines=True)
        )
        # The files lived in a temporary folder: the record names them by file name only.
        for key in ("command", "stderr_tail"):
            arm[key] = arm[key].replace(f"{tmp}{os.sep}", "")
    if rows != args.n:
        raise SystemExit(f"predict wrote {rows} rows for {args.n} reviews")
    arm.update(
        label=args.label,
        reviews=args.n,
        reviews_per_s=round(args.n / arm["wall_s"], 1),
        input_format=args.input_format,
        output_format=args.output_format,
    )
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"arms": []}
    report["meta"] = {
        "reviews": args.n,
        "source": source,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "run": Path(args.run).name,
    }
    report["arms"] = [a for a in report["arms"] if a["label"] != args.label] + [arm]
    write_json(out, report)
    print(json.dumps(arm, indent=2))


if __name__ == "__main__":
    main()
