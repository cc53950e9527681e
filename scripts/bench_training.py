"""Side-by-side training benchmark: the plain Trainer recipe vs `imdb-sentiment train`.

Both arms fine-tune the same encoder on the same stratified subset of the prepared training
split, for the same number of epochs, and are scored on the same validation reviews. The plain
arm is the recipe of the Hugging Face text-classification tutorial: tokenize with
``truncation=True`` (head only), pad every review to ``max_length``, lr 2e-5, batch 16.
Each arm runs in its own process, one after the other, so neither slows the other.

    python scripts/bench_training.py --data data/imdb --model minilm --train-samples 2000 \
        --eval-samples 1000 --max-length 128 --out docs/results/bench_training.json
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


def _subset(data: str, n_train: int, n_eval: int, seed: int) -> tuple[Any, Any]:
    from imdb_sentiment.data import splits as data_mod

    train = data_mod.sample(data_mod.load_split(data, "train"), n_train, seed)
    val = data_mod.sample(data_mod.load_split(data, "validation"), n_eval, seed)
    return train, val


def plain_arm(args: argparse.Namespace) -> dict[str, Any]:
    """The tutorial recipe, written out the way its readers write it."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    from imdb_sentiment.modeling.loading import resolve_model_name
    from imdb_sentiment.training.callbacks import ProcessRecorder

    train, val = _subset(args.data, args.train_samples, args.eval_samples, args.seed)
    name = resolve_model_name(args.model)
    tok = AutoTokenizer.from_pretrained(name)

    class Reviews:
        def __init__(self, frame: Any) -> None:
            self.enc = tok(
                frame["text"].tolist(),
                truncation=True,
                max_length=args.max_length,
                padding="max_length",
            )
            self.labels = frame["label"].astype(int).tolist()

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> dict[str, Any]:
            return {
                "input_ids": self.enc["input_ids"][i],
                "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i],
            }

    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=2)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            learning_rate=2e-5,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=16,
            per_device_eval_batch_size=64,
            weight_decay=0.01,
            eval_strategy="no",
            save_strategy="no",
            report_to=[],
            seed=args.seed,
            use_cpu=args.cpu,
            disable_tqdm=True,
        )
        recorder = ProcessRecorder()
        trainer = Trainer(
            model=model,
            args=targs,
            train_dataset=Reviews(train),  # type: ignore[arg-type]
            callbacks=[recorder.callback()],
        )
        out_metrics = trainer.train().metrics
        pred = trainer.predict(Reviews(val))  # type: ignore[arg-type]
    accuracy = float((np.argmax(pred.predictions, axis=1) == pred.label_ids).mean())
    return {
        "train_samples_per_second": out_metrics["train_samples_per_second"],
        "train_step_samples_per_second": ProcessRecorder.step_throughput(recorder.gather("cpu")),
        "train_runtime_s": out_metrics["train_runtime"],
        "accuracy": accuracy,
        "validation_reviews": len(val),
        "train_reviews": len(train),
        "settings": "head truncation, pad to max_length, lr 2e-5, batch 16",
    }


def ours_arm(args: argparse.Namespace) -> dict[str, Any]:
    from imdb_sentiment.config import resolve
    from imdb_sentiment.training.loop import train

    with tempfile.TemporaryDirectory() as runs:
        cfg = resolve(
            overrides={
                "model.name": args.model,
                "data.dir": args.data,
                "model.max_length": args.max_length,
                "data.max_train_samples": args.train_samples,
                "data.max_eval_samples": args.eval_samples,
                "training.seed": args.seed,
                "training.epochs": args.epochs,
                "training.learning_rate": args.lr,
                "training.batch_size": 16,  # what the settings below say, whatever the recipe
                "run.output_dir": runs,
                "run.name": "bench",
                "run.report_to": "none",
            }
        )
        result = train(cfg, log=lambda _m: None)
    m = result.metrics
    return {
        "train_samples_per_second": m["train_samples_per_second"],
        "train_step_samples_per_second": m["train_step_samples_per_second"],
        "train_runtime_s": m["train_runtime_s"],
        "accuracy": m["accuracy"],
        "validation_reviews": m["n"],
        "train_reviews": m["train_samples"],
        "settings": f"{cfg.model.truncation} truncation, dynamic padding, lr {args.lr}, "
        "batch 16, best-epoch checkpoint",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/imdb")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate of our arm")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even with a GPU")
    parser.add_argument("--arm", choices=["plain", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if args.arm:  # child process: run one arm, print its JSON
        result = plain_arm(args) if args.arm == "plain" else ours_arm(args)
        print("RESULT " + json.dumps(result))
        return

    results: dict[str, Any] = {}
    for arm in ("plain", "ours"):
        start = time.time()
        proc = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--arm", arm],
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.exit(f"arm {arm} failed:\n{proc.stderr[-2000:]}")
        results[arm] = {**json.loads(line[7:]), "wall_s": round(time.time() - start, 1)}
        print(
            f"{arm:>6}: {results[arm]['accuracy']:.2%} on "
            f"{results[arm]['validation_reviews']} validation reviews, "
            f"{results[arm]['train_samples_per_second']:.2f} train samples/s end to end, "
            f"{results[arm]['train_step_samples_per_second']:.2f} in training steps "
            f"({results[arm]['settings']})",
            flush=True,
        )
    results["speed_ratio"] = (
        results["ours"]["train_samples_per_second"] / results["plain"]["train_samples_per_second"]
    )
    results["step_speed_ratio"] = (
        results["ours"]["train_step_samples_per_second"]
        / results["plain"]["train_step_samples_per_second"]
    )
    results["accuracy_gain_points"] = 100 * (
        results["ours"]["accuracy"] - results["plain"]["accuracy"]
    )
    results["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    results["command"] = " ".join(["python", "scripts/bench_training.py", *sys.argv[1:]])
    print(
        f"speed ratio {results['speed_ratio']:.2f}x end to end, "
        f"{results['step_speed_ratio']:.2f}x in training steps, accuracy "
        f"{results['accuracy_gain_points']:+.1f} points"
    )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
