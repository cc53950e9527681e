#!/usr/bin/env python
"""Students against their teacher: accuracy, paired interval of the difference, agreement.

Reads finished runs (nothing is trained here): the teacher and any number of students trained
with `imdb-sentiment train --layers N [--distill-from TEACHER]`, all validated on the same
reviews, and writes one JSON with each run's validation accuracy (95% bootstrap interval), the
paired bootstrap 95% interval of (student - teacher) accuracy, label agreement with the
teacher, the layers kept, the training rows and time, and the command that trained it.

    python scripts/compare_students.py --teacher runs/minilm-2k \\
        --student runs/a-3layers --student runs/b-3layers-distilled \\
        --out docs/results/distill_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from imdb_sentiment.atomic import write_json
from imdb_sentiment.hardware import cpu_name
from imdb_sentiment.training.student import compare_with_teacher


def summary(run: Path) -> dict[str, Any]:
    """What a run is and how it scored on validation."""
    m = json.loads((run / "metrics.json").read_text())["metrics"]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    iv = (m.get("intervals") or {}).get("accuracy") or {}
    model = json.loads((run / "model" / "config.json").read_text())
    student = m.get("student") or {}
    return {
        "run": run.name,
        "layers": model.get("num_hidden_layers", model.get("n_layers")),
        "layers_kept": (student.get("layers") or {}).get("kept"),
        "distillation": student.get("distillation"),
        "accuracy": m["accuracy"],
        "accuracy_low": iv.get("low"),
        "accuracy_high": iv.get("high"),
        "validation_samples": m["validation_samples"],
        "train_samples": m["train_samples"],
        "train_runtime_s": m.get("train_runtime_s"),
        "training_precision": m.get("training_precision"),
        "settings": {
            "max_length": cfg["model"]["max_length"],
            "truncation": cfg["model"]["truncation"],
            "learning_rate": cfg["training"]["learning_rate"],
            "batch_size": cfg["training"]["batch_size"],
            "epochs": cfg["training"]["epochs"],
            "seed": cfg["training"]["seed"],
            "extra_train": Path(cfg["data"]["extra_train"]).name
            if cfg["data"].get("extra_train")
            else None,
        },
    }


def pair(a: Path, b: Path) -> dict[str, Any]:
    """Accuracy of run ``b`` minus run ``a`` on the same validation reviews, paired."""
    from imdb_sentiment.metrics.intervals import paired_accuracy_difference

    fa = pd.read_parquet(a / "validation_predictions.parquet")
    fb = pd.read_parquet(b / "validation_predictions.parquet")
    if fa["text"].tolist() != fb["text"].tolist():
        return {"a": a.name, "b": b.name, "compared": False}
    diff = paired_accuracy_difference(
        fa["label"].to_numpy(),
        fa["positive_probability"].to_numpy(float),
        fb["positive_probability"].to_numpy(float),
    )
    return {"a": a.name, "b": b.name, "compared": True, "b_minus_a": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, type=Path)
    parser.add_argument("--student", action="append", type=Path, default=[])
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        type=Path,
        default=[],
        metavar=("A", "B"),
        help="Also compare two runs with each other: accuracy of B minus A, paired.",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    teacher = args.teacher
    manifest = json.loads((teacher / "data_manifest.json").read_text())
    rows = []
    for run in args.student:
        frame = pd.read_parquet(run / "validation_predictions.parquet")
        comparison = compare_with_teacher(
            teacher, frame, frame["positive_probability"].to_numpy(float), manifest
        )
        rows.append({**summary(run), "vs_teacher": comparison})
    write_json(
        Path(args.out),
        {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "split": "validation",
            "teacher": summary(teacher),
            "students": rows,
            "pairs": [pair(a, b) for a, b in args.pair],
        },
    )
    nan = float("nan")
    for r in rows:
        c = r["vs_teacher"]
        d = c.get("accuracy_difference") or {}
        print(
            f"{r['run']}: {r['accuracy']:.4f} vs teacher {c.get('teacher_accuracy', nan):.4f}, "
            f"difference {d.get('difference', nan):+.4f} [{d.get('low', nan):+.4f}, "
            f"{d.get('high', nan):+.4f}], agreement {c.get('agreement', nan):.4f}"
        )


if __name__ == "__main__":
    main()
