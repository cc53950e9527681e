"""Self-training vs not: the same fine-tuning with and without a teacher's confident labels.

For each seed: the baseline run (trained here, or an existing run named with ``--baseline
SEED=RUN`` whose settings match) is the teacher; ``imdb-sentiment pseudo-label`` labels a seeded
sample of the unlabelled reviews with it and keeps the confident ones; the student is the same
``imdb-sentiment train`` command plus ``--extra-train``. Both arms are scored on the same
validation reviews; the JSON holds each run's accuracy with its 95% interval, the paired
difference with a paired-bootstrap interval, the pseudo-label counts, wall times and the machine.
It is rewritten after every step, so a comparison cut short still leaves its results.

    python scripts/compare_self_training.py --data data/imdb \
        --unlabelled data/imdb/unsup.parquet --label-reviews 5000 --seeds 42 \
        --out docs/results/self_training_cpu.json
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

import pandas as pd
import yaml

from imdb_sentiment.hardware import cpu_name
from imdb_sentiment.metrics.intervals import paired_accuracy_difference

CLI = [sys.executable, "-m", "imdb_sentiment"]
RECIPE_KEYS = {
    "model": ("name", "max_length", "truncation"),
    "data": ("max_train_samples", "max_eval_samples"),
    "training": ("learning_rate", "epochs", "batch_size", "warmup_ratio", "seed", "precision"),
}


def run(cmd: list[str], log: Path, lock: str | None = None) -> float:
    """Run a command (under ``flock lock`` when given), output to ``log``; return its wall
    time; stop on failure."""
    full = ["flock", lock, *cmd] if lock else cmd
    start = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.call(full, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code != 0:
        sys.exit(f"failed ({code}) after {wall:.0f}s: {' '.join(cmd)}; see {log}")
    return wall


def shown(cmd: list[str]) -> str:
    return "imdb-sentiment " + " ".join(cmd[len(CLI) :])


def recipe(run_dir: Path) -> dict[str, Any]:
    """The settings both arms must share (the data's location and the run's name aside)."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {section: {k: cfg[section][k] for k in keys} for section, keys in RECIPE_KEYS.items()}


def run_result(run_dir: Path, wall: float | None) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    iv = (metrics.get("intervals") or {}).get("accuracy") or {}
    return {
        "accuracy": metrics["accuracy"],
        "accuracy_low": iv.get("low"),
        "accuracy_high": iv.get("high"),
        "validation_samples": metrics["validation_samples"],
        "train_samples": metrics["train_samples"],
        "train_runtime_s": metrics.get("train_runtime_s"),
        "wall_s": None if wall is None else round(wall, 1),
    }


def train_cmd(args: argparse.Namespace, seed: int, name: str, extra: list[str]) -> list[str]:
    return [
        *CLI,
        "train",
        "--model",
        args.model,
        "--data",
        args.data,
        "--max-train-samples",
        str(args.train_samples),
        "--max-length",
        str(args.max_length),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(seed),
        "--report-to",
        "none",
        "--no-reference",
        "--output-dir",
        str(args.runs),
        "--run-name",
        name,
        *extra,
    ]


def one_seed(
    args: argparse.Namespace,
    seed: int,
    baselines: dict[int, str],
    result: dict[str, Any],
    save: Any,
) -> None:
    """Baseline (teacher), pseudo-labels, student, and their paired difference for ``seed``."""
    work, runs = Path(args.work), Path(args.runs)
    entry: dict[str, Any] = result["seeds"].setdefault(str(seed), {})
    if seed in baselines:
        base = Path(baselines[seed])
        entry["baseline"] = {
            **run_result(base, None),
            "run": str(base),
            "command": "existing run (its config.yaml)",
        }
    else:
        base = runs / f"base-s{seed}"
        cmd = train_cmd(args, seed, base.name, [])
        wall = None if (base / "metrics.json").is_file() else run(cmd, work / f"{base.name}.log")
        entry["baseline"] = {**run_result(base, wall), "command": shown(cmd)}
    save()
    pseudo = work / f"pseudo-s{seed}.parquet"
    cmd = [
        *CLI,
        "pseudo-label",
        str(base),
        "--data",
        args.data,
        "--unlabelled",
        args.unlabelled,
        "--max-reviews",
        str(args.label_reviews),
        "--min-confidence",
        str(args.min_confidence),
        *(["--balance"] if args.balance else []),
        "--drop-overlap",
        "--seed",
        str(seed),
        "--output",
        str(pseudo),
        "--overwrite",
    ]
    wall = run(cmd, work / f"pseudo-s{seed}.log", args.lock)
    manifest = json.loads(pseudo.with_name(f"{pseudo.stem}.manifest.json").read_text())
    entry["pseudo_label"] = {
        "command": shown(cmd),
        "wall_s": round(wall, 1),
        "counts": manifest["counts"],
        "labels": manifest["labels"],
        "teacher": {**manifest["teachers"][0], "run": str(base)},
    }
    save()
    student = runs / f"self-s{seed}"
    cmd = train_cmd(args, seed, student.name, ["--extra-train", str(pseudo), "--overwrite"])
    wall = run(cmd, work / f"{student.name}.log")
    data_manifest = json.loads((student / "data_manifest.json").read_text())
    entry["student"] = {
        **run_result(student, wall),
        "command": shown(cmd),
        "extra_train": {
            **{
                k: v
                for k, v in data_manifest["extra_train"].items()
                if k != "pseudo_label_manifest"
            },
            "path": str(pseudo),
        },
    }
    a = pd.read_parquet(base / "validation_predictions.parquet")
    b = pd.read_parquet(student / "validation_predictions.parquet")
    assert a["text"].tolist() == b["text"].tolist(), "the arms saw different validation reviews"
    entry["paired"] = {
        **paired_accuracy_difference(
            a["label"].to_numpy(),
            a["positive_probability"].to_numpy(),
            b["positive_probability"].to_numpy(),
            seed=seed,
        ),
        "same_recipe": recipe(base) == recipe(student),
        "validation_reviews": len(a),
    }
    save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/imdb")
    ap.add_argument("--unlabelled", default="data/imdb/unsup.parquet")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--train-samples", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--epochs", default="1")
    ap.add_argument("--label-reviews", type=int, default=5000)
    ap.add_argument("--min-confidence", type=float, default=0.9)
    ap.add_argument("--no-balance", dest="balance", action="store_false")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1])
    ap.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="SEED=RUN",
        help="use an existing run (same settings) as that seed's baseline/teacher",
    )
    ap.add_argument("--lock", help="flock this file around the (timed) labelling")
    ap.add_argument("--work", default="runs/self-training")
    ap.add_argument("--out", default="docs/results/self_training_cpu.json")
    args = ap.parse_args()
    args.runs = str(Path(args.work) / "runs")
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    baselines = {int(k): v for k, v in (b.split("=", 1) for b in args.baseline)}
    out = Path(args.out)
    result: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "note": "other jobs shared the CPU: wall times are noisy, accuracies are not affected",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "lock")},
        "seeds": {},
    }

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

    for seed in args.seeds:
        one_seed(args, seed, baselines, result, save)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    save()
    print(json.dumps({s: e.get("paired") for s, e in result["seeds"].items()}, indent=2))


if __name__ == "__main__":
    main()
