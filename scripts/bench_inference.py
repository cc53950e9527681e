#!/usr/bin/env python
"""Inference benchmark: the plain transformers pipeline against the Predictor and ONNX exports.

Every arm classifies the same labelled reviews at the same maximum length, each in a fresh
subprocess so that peak memory (the process's max RSS) is its own. Reported per arm: reviews
per second (tokenization included, after a short warm-up), peak RSS, accuracy, and agreement /
max |Δp| with the Predictor in float32.

    .venv/bin/python scripts/bench_inference.py \\
        --run runs/minilm-2k --n 1000 --max-length 128 \\
        --out bench.json --markdown bench.md

The ONNX arms need `imdb-sentiment export RUN --format onnx --quantize int8` first, the
torch-int8 arm `imdb-sentiment export RUN --format torch-int8`; they are skipped (and say so)
when the files are missing. `torch-auto` is what `predict` does by default on this CPU.
`--baseline-run TEACHER` runs the pipeline arms on another run's model, so that a student
(`--run`, from `train --layers/--distill-from`) is timed against the model it replaces.

To emulate an AVX2-only CPU on a newer one, cap every library that dispatches on its own (the
report records the caps; ONNX Runtime has no such variable and keeps the host's kernels):

    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
    FBGEMM_ENABLE_INSTRUCTIONS=AVX2 .venv/bin/python scripts/bench_inference.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.hardware import cpu_name

ARMS = (
    "pipeline",
    "pipeline-b32",
    "torch-auto",
    "torch-fp32",
    "torch-bf16",
    "torch-bf16-compiled",
    "torch-int8",
    "onnx-fp32",
    "onnx-int8",
)
CAP_VARIABLES = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "MKL_ENABLE_INSTRUCTIONS",
    "FBGEMM_ENABLE_INSTRUCTIONS",
)
LABELS = {
    "pipeline": "transformers pipeline (default batch size)",
    "pipeline-b32": "transformers pipeline, batch 32",
    "torch-auto": "Predictor, default (precision auto)",
    "torch-fp32": "Predictor, PyTorch fp32 (length-sorted batches)",
    "torch-bf16": "Predictor, PyTorch bf16",
    "torch-bf16-compiled": "Predictor, PyTorch bf16 + torch.compile",
    "torch-int8": "Predictor, PyTorch dynamic int8 (parity-gated plan)",
    "onnx-fp32": "Predictor, ONNX Runtime fp32",
    "onnx-int8": "Predictor, ONNX Runtime int8 (dynamic)",
}
WARMUP = 16
ALL_POSITIONS = "-all-positions"
"""Suffix for a torch arm whose last layer computes every position, as before the Predictor
read the first token only (``imdb_sentiment.inference.cls_only``): the same model and labels,
timed side by side."""


UNFUSED = "-unfused"
"""Suffix for a bf16 arm whose Linear layers run as plain ``addmm`` with a separate GELU, as
before ``imdb_sentiment.inference.fused``."""
SUFFIXES = {ALL_POSITIONS: "last layer at every position", UNFUSED: "bias and GELU not fused"}


def split_arm(arm: str) -> tuple[str, list[str]]:
    """The base arm and its suffixes (``torch-auto-unfused-all-positions``)."""
    found = []
    changed = True
    while changed:
        changed = False
        for suffix in SUFFIXES:
            if arm.endswith(suffix):
                arm, changed = arm.removesuffix(suffix), True
                found.append(suffix)
    return arm, found


def label(arm: str) -> str:
    base, suffixes = split_arm(arm)
    return ", ".join([LABELS[base], *(SUFFIXES[s] for s in suffixes)])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_pipeline(
    model_dir: Path, texts: list[str], max_length: int, batch_size: int | None
) -> np.ndarray:
    """Positive-class probabilities from ``transformers.pipeline`` as people usually call it."""
    from transformers import pipeline

    from imdb_sentiment.text import POSITIVE

    clf = pipeline("text-classification", model=str(model_dir), device=-1)
    kwargs: dict[str, Any] = {"truncation": True, "max_length": max_length, "top_k": None}
    if batch_size:
        kwargs["batch_size"] = batch_size
    clf(texts[:WARMUP], **kwargs)
    start = time.perf_counter()
    out = clf(texts, **kwargs)
    elapsed = time.perf_counter() - start
    probs = np.array([next(d["score"] for d in row if d["label"] == POSITIVE) for row in out])
    return np.asarray([elapsed, *probs])


def run_predictor(
    run: Path, texts: list[str], max_length: int, arm: str, batch_size: int
) -> np.ndarray:
    from contextlib import nullcontext

    from imdb_sentiment.inference.cls_only import all_positions
    from imdb_sentiment.inference.fused import unfuse
    from imdb_sentiment.inference.predictor import Predictor

    arm, suffixes = split_arm(arm)
    every_position = ALL_POSITIONS in suffixes
    backend = {"onnx-fp32": "onnx", "onnx-int8": "onnx-int8"}.get(arm, "torch")
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    if backend == "torch":
        kwargs["precision"] = arm.removeprefix("torch-")
    loading = time.perf_counter()
    p = Predictor.from_path(run, backend=backend, **kwargs)
    print(f"precision {p.precision}", file=sys.stderr)
    if UNFUSED in suffixes and p.model is not None:
        unfuse(p.model)
    p.settings.max_length = max_length
    # Temperature is a monotone rescaling; compare raw probabilities like the pipeline does.
    p.settings.temperature = 1.0
    # A compiled arm compiles again for every position, in the warm-up.
    with all_positions(p.model) if every_position and p.model is not None else nullcontext():
        p.predict_proba(texts[:WARMUP])
        # Reported, not timed: compiled arms pay torch.compile here.
        print(f"start-up {time.perf_counter() - loading:.1f}", file=sys.stderr)
        start = time.perf_counter()
        probs = p.predict_proba(texts)[:, 1]
        elapsed = time.perf_counter() - start
    return np.asarray([elapsed, *probs])


def worker(args: argparse.Namespace) -> None:
    """One arm in this process; writes ``{seconds, rss, probs}`` to ``args.result``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import pandas as pd

    from imdb_sentiment.modeling.loading import find_model_dir

    texts = pd.read_parquet(args.reviews)["text"].tolist()
    rss_before = peak_rss_mb()
    if args.worker.startswith("pipeline"):
        batch = 32 if args.worker == "pipeline-b32" else None
        res = run_pipeline(find_model_dir(args.run), texts, args.max_length, batch)
    else:
        res = run_predictor(Path(args.run), texts, args.max_length, args.worker, args.batch_size)
    Path(args.result).write_text(
        json.dumps(
            {
                "seconds": float(res[0]),
                "probs": res[1:].tolist(),
                "peak_rss_mb": peak_rss_mb(),
                "rss_after_imports_mb": rss_before,
            }
        )
    )


def pick_reviews(run: Path, data: str | None, split: str, n: int) -> Any:
    from imdb_sentiment.data.splits import load_split
    from imdb_sentiment.runs import run_data_dir

    frame = load_split(Path(data) if data else run_data_dir(run), split)
    if n < len(frame):
        frame = frame.sample(n=n, random_state=0)
    return frame.reset_index(drop=True)


def markdown(report: dict[str, Any]) -> str:
    rows = report["arms"]
    base = next((r for r in rows if r["arm"] == "pipeline" and "error" not in r), None)
    lines = [
        f"{report['n']:,} IMDB validation reviews, max length {report['max_length']} tokens, "
        f"{report['cpu']} ({report['cores']} cores, native bf16: {report['native_bf16']}, "
        f"int8 kernel: {report['int8_kernel']}, emulation: {report['emulation'] or 'none'}), "
        f"torch {report['torch']}, onnxruntime {report['onnxruntime']}.",
        "",
        "| arm | reviews/s | vs pipeline | peak RSS (MB) | accuracy | Δ acc (pts) "
        "| agreement with fp32 | max abs Δp vs fp32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {label(r['arm'])} | skipped: {r['error']} | | | | | | |")
            continue
        speed = f"{r['reviews_per_s'] / base['reviews_per_s']:.2f}x" if base else "-"
        dacc = f"{100 * (r['accuracy'] - base['accuracy']):+.1f}" if base else "-"
        agree = "-" if r.get("agreement") is None else f"{r['agreement']:.2%}"
        dp = "-" if r.get("max_abs_diff") is None else f"{r['max_abs_diff']:.4f}"
        name = label(r["arm"]) + (f" [{r['precision']}]" if r.get("precision") else "")
        lines.append(
            f"| {name} | {r['reviews_per_s']:.1f} | {speed} | "
            f"{r['peak_rss_mb']:.0f} | {r['accuracy']:.4f} | {dacc} | {agree} | {dp} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="Run directory (or model folder).")
    parser.add_argument(
        "--baseline-run",
        help="Run the pipeline arms on this run's model instead (say, the teacher of a "
        "student given as --run) [default: --run].",
    )
    parser.add_argument("--data", help="Prepared data folder [default: the run's].")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--n", type=int, default=1000, help="Reviews to classify.")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32, help="Predictor batch size.")
    parser.add_argument("--arms", default=",".join(ARMS), help="Comma-separated subset.")
    parser.add_argument("--out", default="bench_inference.json")
    parser.add_argument("--markdown", help="Also write the table here.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--reviews", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import onnxruntime
    import torch

    from imdb_sentiment.hardware import int8_kernel
    from imdb_sentiment.inference.backends import cpu_has_native_bf16
    from imdb_sentiment.text import predicted_labels

    run = Path(args.run)
    baseline = Path(args.baseline_run) if args.baseline_run else run
    frame = pick_reviews(run, args.data, args.split, args.n)
    labels = frame["label"].to_numpy()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        reviews = Path(tmp) / "reviews.parquet"
        frame[["text"]].to_parquet(reviews)
        for arm in arms:
            out = Path(tmp) / f"{arm}.json"
            cmd = [
                sys.executable,
                __file__,
                "--run",
                str(baseline if arm.startswith("pipeline") else run),
                "--worker",
                arm,
                "--reviews",
                str(reviews),
                "--result",
                str(out),
                "--max-length",
                str(args.max_length),
                "--batch-size",
                str(args.batch_size),
            ]
            print(f"[{arm}] running on {len(frame):,} reviews ...", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["failed"])[-1][:160]
                results[arm] = {"arm": arm, "error": reason}
                print(f"[{arm}] skipped: {reason}", file=sys.stderr)
                continue
            raw = json.loads(out.read_text())
            probs = np.asarray(raw["probs"])
            ran = [x for x in proc.stderr.splitlines() if x.startswith("precision ")]
            results[arm] = {
                "arm": arm,
                "seconds": raw["seconds"],
                "reviews_per_s": len(frame) / raw["seconds"],
                "peak_rss_mb": raw["peak_rss_mb"],
                "accuracy": float(np.mean(predicted_labels(probs) == labels)),
                "probs": probs,
            }
            if ran:
                results[arm]["precision"] = ran[-1].split()[1]
            started = [x for x in proc.stderr.splitlines() if x.startswith("start-up ")]
            if started:
                results[arm]["start_up_s"] = float(started[-1].split()[1])
            print(
                f"[{arm}] {results[arm]['reviews_per_s']:.1f} reviews/s, accuracy "
                f"{results[arm]['accuracy']:.4f}",
                file=sys.stderr,
                flush=True,
            )
    ref = results.get("torch-fp32", {}).get("probs")
    rows = []
    for arm in arms:
        r = results[arm]
        if "probs" in r and ref is not None:
            r["agreement"] = float(np.mean(predicted_labels(r["probs"]) == predicted_labels(ref)))
            diff = np.abs(r["probs"] - ref)
            r["max_abs_diff"], r["mean_abs_diff"] = float(diff.max()), float(diff.mean())
        rows.append(r)
    for r in rows:
        r.pop("probs", None)
    report = {
        "n": len(frame),
        "max_length": args.max_length,
        "split": args.split,
        "run": str(run),
        "baseline_run": str(baseline),
        "batch_size": args.batch_size,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_native_bf16(),
        "int8_kernel": int8_kernel(),
        "emulation": " ".join(f"{k}={os.environ[k]}" for k in CAP_VARIABLES if k in os.environ),
        "onnxruntime_note": "ONNX Runtime (MLAS) dispatches on cpuid and reads none of the caps",
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "arms": rows,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
