#!/usr/bin/env python
"""Compare training recipes on the CPU demo budget, side by side, on validation only.

Every arm runs ``imdb-sentiment train`` in its own process on the same stratified training
subset, the same validation reviews, seed and budget (the ``make demo`` budget: MiniLM, 2,000
reviews, 128 tokens, 1 epoch), differing only in the tuning flags of the arm. An arm written
``recipe`` passes no tuning flag at all, so it measures what a user gets from the model recipe.
Results (validation accuracy with its bootstrap 95% interval, paired difference to the first
arm, training time) are written to ``--json`` after every arm, so an interrupted comparison
keeps what finished.

    .venv/bin/python scripts/compare_recipes.py --data data/imdb \\
        --arms lr=1e-4,bs=16,warmup=0.1 lr=5e-5,bs=16,warmup=0 \\
        --eval-samples 1000 --json docs/results/recipes_cpu_demo.json

An arm is ``recipe`` or comma-separated ``lr=``, ``bs=``, ``warmup=`` settings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from imdb_sentiment.metrics.intervals import paired_accuracy_difference

ARM_KEYS = {"lr": "--lr", "bs": "--batch-size", "warmup": "--set training.warmup_ratio="}


def parse_arm(text: str) -> dict[str, Any]:
    """``lr=1e-4,bs=16,warmup=0.1`` (any subset) or ``recipe`` (no tuning flags)."""
    if text == "recipe":
        return {"name": "recipe", "settings": {}}
    settings: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in ARM_KEYS or not value:
            raise SystemExit(f"--arms: expected recipe or lr=,bs=,warmup= settings, got {text!r}")
        settings[key] = value
    return {"name": text, "settings": settings}


def arm_flags(arm: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for key, value in arm["settings"].items():
        flag = ARM_KEYS[key]
        flags += (
            ["--set", flag.split(" ", 1)[1] + value] if flag.startswith("--set") else [flag, value]
        )
    return flags


def machine() -> str:
    """A one-line description of where this ran."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    extras = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return (
        f"CPU {cpu} ({os.cpu_count()} cores visible, {', '.join(extras) or 'no bf16'}), "
        f"torch {torch.__version__}"
    )


def run_arm(arm: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    name = "arm-" + "".join(c if c.isalnum() or c in "-." else "_" for c in arm["name"])
    command = [
        str(Path(sys.executable).parent / "imdb-sentiment"),
        "train",
        "--model",
        args.model,
        "--max-train-samples",
        str(args.train_samples),
        "--max-length",
        str(args.max_length),
        "--epochs",
        str(args.epochs),
        "--data",
        args.data,
        "--max-eval-samples",
        str(args.eval_samples),
        "--seed",
        str(args.seed),
        "--precision",
        args.precision,
        "--report-to",
        "none",
        "--output-dir",
        args.output,
        "--run-name",
        name,
        "--overwrite",
        *arm_flags(arm),
    ]
    print(f"[{arm['name']}] {shlex.join(command)}", flush=True)
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - started
    log = Path(args.output) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        return {
            "arm": arm,
            "command": shlex.join(command),
            "failed": done.returncode,
            "error": (done.stderr.strip().splitlines() or ["?"])[-1],
        }
    run_dir = Path(args.output) / name
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    config = (run_dir / "config.yaml").read_text()
    sources = run_dir / "config_sources.yaml"
    preds = pd.read_parquet(run_dir / "validation_predictions.parquet")
    return {
        "arm": arm,
        "command": shlex.join(command),
        "run_dir": str(run_dir),
        "wall_s": round(wall, 1),
        "train_runtime_s": metrics.get("train_runtime_s"),
        "validation": {k: metrics[k] for k in ("n", "accuracy", "f1", "roc_auc", "log_loss")},
        "validation_accuracy_interval": (metrics.get("intervals") or {}).get("accuracy"),
        "config": config,
        "config_sources": sources.read_text() if sources.is_file() else None,
        "_probabilities": preds["positive_probability"].to_numpy(),
        "_labels": preds["label"].to_numpy(int),
    }


def public(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="data/imdb")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--arms", nargs="+", required=True, type=parse_arm)
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--precision", default="fp32", help="pinned so that every arm computes the same way"
    )
    parser.add_argument("--output", default="runs/compare-recipes")
    parser.add_argument("--json", dest="json_path", required=True)
    args = parser.parse_args(argv)

    from imdb_sentiment.atomic import write_json

    meta = {
        "command": shlex.join([Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "machine": machine(),
        "data": args.data,
        "split": "validation (carved from train)",
        "train_samples": args.train_samples,
        "validation_samples": args.eval_samples,
        "max_length": args.max_length,
        "epochs": args.epochs,
        "seed": args.seed,
        "precision": args.precision,
        "model": args.model,
    }
    results: list[dict[str, Any]] = []
    for arm in args.arms:
        results.append(run_arm(arm, args))
        first, last = results[0], results[-1]
        if len(results) > 1 and "_labels" in first and "_labels" in last:
            last["paired_vs_first"] = paired_accuracy_difference(
                first["_labels"], first["_probabilities"], last["_probabilities"]
            )
        meta["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        write_json(args.json_path, {"meta": meta, "arms": [public(r) for r in results]})
        acc = last.get("validation", {}).get("accuracy")
        print(f"[{arm['name']}] validation accuracy: {acc}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
