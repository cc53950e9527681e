"""CPU training in fp32 vs bf16 autocast, side by side in one run: speed and validation accuracy.

Part 1 trains the same encoder twice with ``imdb_sentiment.training.loop.train`` on the same
stratified subset of the prepared training split, same settings except ``training.precision``,
back to back, and scores both on the same validation reviews.

Part 2 times training steps (forward, backward, AdamW) of an fp32 and a bf16-autocast copy of the
model on the same real batches, alternating step by step so both arms see the same machine load
(useful where other work shares the CPU). It runs in a child process per oneDNN ISA cap: none
(AMX on an AMX Xeon), ``AVX512_CORE_BF16`` (AVX512-BF16 without AMX) and ``AVX2`` (bf16 emulated).

    python scripts/bench_cpu_precision.py --data data/imdb --model minilm --train-samples 2000 \
        --eval-samples 1000 --max-length 128 --out docs/results/cpu_precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from imdb_sentiment.hardware import cpu_name

ISA_CAPS = {"none": None, "avx512_bf16": "AVX512_CORE_BF16", "avx2": "AVX2"}


def train_arm(args: argparse.Namespace, precision: str, out_dir: Path) -> dict[str, Any]:
    """One full training run through the library, in ``precision``."""
    from imdb_sentiment.config import resolve
    from imdb_sentiment.training.loop import train

    cfg = resolve(
        overrides={
            "model.name": args.model,
            "data.dir": args.data,
            "data.max_train_samples": args.train_samples,
            "data.max_eval_samples": args.eval_samples,
            "model.max_length": args.max_length,
            "training.epochs": args.epochs,
            "training.learning_rate": args.lr,
            "training.batch_size": args.batch_size,
            "training.precision": precision,
            "training.seed": args.seed,
            "run.output_dir": str(out_dir),
            "run.name": f"precision-{precision}",
            "run.report_to": "none",
        }
    )
    start = time.perf_counter()
    result = train(cfg, log=lambda line: print(f"[{precision}] {line}", flush=True))
    wall = time.perf_counter() - start
    m = result.metrics
    keep = (
        "accuracy",
        "f1",
        "roc_auc",
        "n",
        "train_samples",
        "train_runtime_s",
        "train_samples_per_second",
        "train_step_samples_per_second",
        "train_loss",
        "training_precision",
        "intervals",
    )
    return {
        "precision": precision,
        "wall_s": round(wall, 1),
        **{k: m.get(k) for k in keep},
        "settings": {
            "learning_rate": cfg.training.learning_rate,
            "batch_size": cfg.training.batch_size,
            "epochs": cfg.training.epochs,
            "max_length": cfg.model.max_length,
            "truncation": cfg.model.truncation,
            "warmup_ratio": cfg.training.warmup_ratio,
        },
    }


def _batches(args: argparse.Namespace, tokenizer: Any) -> list[dict[str, Any]]:
    from transformers import DataCollatorWithPadding

    from imdb_sentiment.data.splits import load_split, sample
    from imdb_sentiment.modeling.tokenization import encode

    frame = sample(load_split(args.data, "train"), args.batch_size * args.steps, args.seed)
    enc = encode(
        tokenizer, frame["text"].tolist(), args.max_length, "head+tail", args.max_length // 4
    )
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    labels = frame["label"].astype(int).tolist()
    rows = [{"input_ids": ids, "labels": y} for ids, y in zip(enc.input_ids, labels, strict=True)]
    return [collate(rows[i : i + args.batch_size]) for i in range(0, len(rows), args.batch_size)]


def steps_arm(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate fp32 and bf16-autocast training steps on the same batches; median step times."""
    import torch

    from imdb_sentiment.hardware import cpu_bf16_unit
    from imdb_sentiment.modeling.loading import (
        load_model_for_training,
        load_tokenizer,
        resolve_model_name,
    )

    name = resolve_model_name(args.model)
    batches = _batches(args, load_tokenizer(name))
    arms = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(args.seed)
        model = load_model_for_training(name)
        model.train()
        arms[precision] = (model, torch.optim.AdamW(model.parameters(), lr=args.lr))
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for i, batch in enumerate(batches):
        for precision, (model, optim) in arms.items():
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**batch).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
            if i >= args.warmup_steps:
                times[precision].append(time.perf_counter() - start)
    median = {p: statistics.median(t) for p, t in times.items()}
    return {
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "bf16_unit": cpu_bf16_unit(),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "timed_steps": len(times["fp32"]),
        "median_step_s": {p: round(v, 4) for p, v in median.items()},
        "samples_per_second": {p: round(args.batch_size / v, 1) for p, v in median.items()},
        "bf16_speedup": round(median["fp32"] / median["bf16"], 2),
    }


def _child_steps(
    args: argparse.Namespace, cap: str | None, steps: int, warmup: int
) -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
    }
    if cap:
        env["ONEDNN_MAX_CPU_ISA"] = cap
    cmd = [
        sys.executable,
        __file__,
        "--steps-only",
        "--data",
        args.data,
        "--model",
        args.model,
        "--max-length",
        str(args.max_length),
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(steps),
        "--warmup-steps",
        str(warmup),
        "--lr",
        str(args.lr),
        "--seed",
        str(args.seed),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"onednn_max_cpu_isa": cap, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/imdb")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=24, help="batches timed per ISA cap")
    parser.add_argument("--warmup-steps", type=int, default=4)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 keeps timings stable on a shared machine)",
    )
    parser.add_argument("--steps-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--out", default="docs/results/cpu_precision.json")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.steps_only:
        print(json.dumps(steps_arm(args)))
        return

    from imdb_sentiment.hardware import cpu_bf16_unit, cpu_flags

    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "bf16_flags": sorted(cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_tile"}),
        "bf16_unit": cpu_bf16_unit(),
        "data": args.data,
        "model": args.model,
        "torch_threads": args.threads or "default",
        "load_average_start": os.getloadavg(),
        "note": "shared machine: other work ran on the same cores; compare arms only "
        "within this run",
    }
    if not args.skip_training:
        with tempfile.TemporaryDirectory() as tmp:
            report["training"] = [train_arm(args, p, Path(tmp)) for p in ("fp32", "bf16")]
    # Emulated bf16 (AVX2) is an order of magnitude slower: a few steps show it.
    report["steps"] = [
        _child_steps(args, cap, *((args.steps, args.warmup_steps) if key != "avx2" else (3, 1)))
        for key, cap in ISA_CAPS.items()
    ]
    report["load_average_end"] = os.getloadavg()
    import torch

    report["torch"] = torch.__version__
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
