"""Adapted vs not adapted: the same fine-tuning from plain MiniLM and from MiniLM after `adapt`.

Runs the real commands (`imdb-sentiment adapt`, then `imdb-sentiment train` for each seed and
arm, the arms of a seed side by side) and writes a JSON file with each run's validation
accuracy and 95% interval, the paired difference per seed with a paired-bootstrap interval,
the adaptation's held-out masked-LM loss before and after, wall times and the machine.
The JSON is rewritten after every run, so a run cut short still leaves its results.

    python scripts/compare_adaptation.py --data data/imdb \
        --unlabelled path/to/imdb/unsup.parquet --out docs/results/adaptation_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from imdb_sentiment.hardware import cpu_name

CLI = [sys.executable, "-m", "imdb_sentiment"]
TRAINING_FAILED = 6  # a run at chance: its metrics are kept, it is a result too


def run(cmd: list[str], log: Path) -> float:
    """Run a command, its output to ``log``; return its wall time; stop on failure."""
    start = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code not in (0, TRAINING_FAILED):
        sys.exit(f"failed ({code}) after {wall:.0f}s: {' '.join(cmd)}; see {log}")
    return wall


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, seed: int = 0, samples: int = 2000
) -> tuple[float, float, float]:
    """Mean of b - a (per-review correctness) and its 95% percentile interval."""
    rng = np.random.default_rng(seed)
    diff = b.astype(float) - a.astype(float)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def train_result(run_dir: Path, wall: float) -> dict[str, Any]:
    payload = json.loads((run_dir / "metrics.json").read_text())
    metrics = payload["metrics"]
    iv = (metrics.get("intervals") or {}).get("accuracy") or {}
    return {
        "state": payload.get("state"),
        "accuracy": metrics["accuracy"],
        "accuracy_low": iv.get("low"),
        "accuracy_high": iv.get("high"),
        "validation_samples": metrics["validation_samples"],
        "train_samples": metrics["train_samples"],
        "train_runtime_s": metrics.get("train_runtime_s"),
        "wall_s": round(wall, 1),
    }


def training_settings(run_dir: Path) -> dict[str, Any]:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {
        "training": cfg["training"],
        "model": {k: v for k, v in cfg["model"].items() if k != "name"},
        "data": cfg["data"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/imdb")
    ap.add_argument("--unlabelled", required=True)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--adapt-texts", type=int, default=2000)
    ap.add_argument("--adapt-max-length", type=int, default=128)
    ap.add_argument(
        "--adapt-extra",
        default="--no-pack --precision bf16 --holdout 200",
        help="further adapt flags, one string",
    )
    ap.add_argument("--train-samples", type=int, default=2000)
    ap.add_argument("--eval-samples", type=int, default=1000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", default="5e-5")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--work", default="/tmp/adapt_compare")
    ap.add_argument("--out", default="docs/results/adaptation_cpu.json")
    args = ap.parse_args()

    work = Path(args.work)
    runs = work / "runs"
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "note": "other jobs shared the CPU; wall times are noisy, accuracies are not affected",
        "runs": {},
        "paired": {},
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    adapted = runs / "adapted" / "model"
    adapt_cmd = [
        *CLI,
        "adapt",
        "--model",
        args.model,
        "--data",
        args.data,
        "--unlabelled",
        args.unlabelled,
        "--include-train",
        "--drop-overlap",
        "--max-texts",
        str(args.adapt_texts),
        "--max-length",
        str(args.adapt_max_length),
        "--epochs",
        "1",
        "--report-to",
        "none",
        "--output-dir",
        str(runs),
        "--run-name",
        "adapted",
        *args.adapt_extra.split(),
    ]
    # None: reused from an earlier invocation.
    wall = None if (adapted / "config.json").is_file() else run(adapt_cmd, work / "adapt.log")
    manifest = json.loads((runs / "adapted" / "adapt_manifest.json").read_text())
    result["adapt"] = {
        "command": "imdb-sentiment " + " ".join(adapt_cmd[3:]),
        "wall_s": wall,
        "used": manifest["used"],
        "result": manifest["result"],
        "corpus": manifest["corpus"],
        "fresh_mlm_head": manifest.get("fresh_mlm_head"),
    }
    save()

    for seed in args.seeds:
        for arm, model in (("plain", args.model), ("adapted", str(adapted))):
            name = f"{arm}-seed{seed}"
            cmd = [
                *CLI,
                "train",
                "--model",
                model,
                "--data",
                args.data,
                "--max-train-samples",
                str(args.train_samples),
                "--max-length",
                str(args.max_length),
                "--epochs",
                "1",
                "--lr",
                args.lr,
                "--max-eval-samples",
                str(args.eval_samples),
                "--seed",
                str(seed),
                "--report-to",
                "none",
                "--output-dir",
                str(runs),
                "--run-name",
                name,
            ]
            if not (runs / name / "metrics.json").is_file():
                wall = run(cmd, work / f"{name}.log")
                result["runs"][name] = train_result(runs / name, wall)
            else:
                kept = result["runs"].get(name) or {}  # reused: no new wall time
                result["runs"][name] = {
                    **train_result(runs / name, 0.0),
                    "wall_s": kept.get("wall_s"),
                }
            result["runs"][name]["command"] = "imdb-sentiment " + " ".join(cmd[3:])
            save()
        plain, adapt_ = runs / f"plain-seed{seed}", runs / f"adapted-seed{seed}"
        if not all((r / "validation_predictions.parquet").is_file() for r in (plain, adapt_)):
            continue  # a run at chance saves no predictions to pair
        same = training_settings(plain) == training_settings(adapt_)
        a = pd.read_parquet(plain / "validation_predictions.parquet")
        b = pd.read_parquet(adapt_ / "validation_predictions.parquet")
        assert a["text"].tolist() == b["text"].tolist(), "the arms saw different validation"
        diff, low, high = paired_bootstrap(a["correct"].to_numpy(), b["correct"].to_numpy(), seed)
        result["paired"][f"seed{seed}"] = {
            "accuracy_gain": diff,
            "low": low,
            "high": high,
            "same_training_settings": same,
            "validation_reviews": len(a),
        }
        save()

    for arm in ("plain", "adapted"):
        accs = [result["runs"][f"{arm}-seed{s}"]["accuracy"] for s in args.seeds]
        result[f"{arm}_mean_accuracy"] = float(np.mean(accs))
    result["machine"]["load_average_at_end"] = os.getloadavg()
    save()
    print(
        json.dumps(
            {k: result[k] for k in ("plain_mean_accuracy", "adapted_mean_accuracy", "paired")},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
