#!/usr/bin/env python
"""Compare truncation strategies on real IMDB with the same budget for every arm.

Each arm fine-tunes the same encoder on the same stratified training subset with the same seed,
epochs and learning rate, differing only in how long reviews are cut. Every arm is then scored
on the same validation reviews: accuracy (with a paired bootstrap interval for the difference
to the first arm), the long-review slice (reviews longer than the window), truncate vs
``--long-reviews chunks`` on that slice, and ECE/Brier before and after temperature scaling.
The head+tail arm (or the last arm) also gets the full ``eval`` report with robustness checks.

Example (CPU, about 10-15 minutes on 2 cores; ``data/imdb`` comes from
``imdb-sentiment download``):

    python scripts/compare_truncation.py \\
        --data data/imdb --model minilm --arms head:256 head+tail:256:64 \\
        --train-samples 2000 --epochs 1 --output runs/compare-256 \\
        --json docs/results/truncation-cpu-256.json --markdown docs/QUALITY.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from imdb_sentiment.metrics.intervals import paired_accuracy_difference

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_arm(text: str) -> dict[str, Any]:
    """``STRATEGY:MAX_LENGTH[:HEAD_TOKENS]``, e.g. ``head:256`` or ``head+tail:256:64``."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SystemExit(f"--arms: expected STRATEGY:MAX_LENGTH[:HEAD_TOKENS], got {text!r}")
    arm = {"truncation": parts[0], "max_length": int(parts[1])}
    arm["head_tokens"] = int(parts[2]) if len(parts) == 3 else max(1, arm["max_length"] // 4)
    arm["name"] = (
        f"{arm['truncation']}-{arm['max_length']}"
        if arm["truncation"] != "head+tail"
        else f"headtail{arm['head_tokens']}-{arm['max_length']}"
    )
    return arm


def machine() -> str:
    """A one-line description of where this ran."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return (
        f"CPU ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads, "
        f"{platform.processor() or platform.machine()}), torch {torch.__version__}"
    )


def run_arm(
    arm: dict[str, Any],
    args: argparse.Namespace,
    val_file: Path,
    long_file: Path | None,
    full_report: bool,
) -> dict[str, Any]:
    from imdb_sentiment.config import resolve
    from imdb_sentiment.evaluation.evaluate import EvalOptions, evaluate
    from imdb_sentiment.metrics.classification import compute_metrics
    from imdb_sentiment.training.loop import train

    overrides = {
        "model.name": args.model,
        "model.max_length": arm["max_length"],
        "model.truncation": arm["truncation"],
        "model.head_tokens": arm["head_tokens"],
        "data.dir": args.data,
        "data.max_train_samples": args.train_samples,
        "data.max_eval_samples": args.eval_samples,
        "run.output_dir": args.output,
        "run.name": arm["name"],
        "run.overwrite": True,
        "run.report_to": "none",
        "training.epochs": args.epochs,
        "training.learning_rate": args.lr,
        "training.batch_size": args.batch_size,
        "training.eval_batch_size": args.eval_batch_size,
        "training.seed": args.seed,
        "training.warmup_ratio": args.warmup_ratio,
        "training.early_stopping_patience": 0,
        "training.save_total_limit": 1,
    }
    cfg = resolve(overrides=overrides)
    started = time.time()
    result = train(cfg, log=lambda m: print(f"[{arm['name']}] {m}", flush=True))
    train_s = time.time() - started
    m = result.metrics
    out: dict[str, Any] = {
        "arm": arm,
        "run_dir": str(result.run_dir),
        "wall_s_train": round(train_s, 1),
        "validation": {k: m[k] for k in ("n", "accuracy", "f1", "roc_auc", "log_loss")},
        "validation_intervals": m.get("intervals"),
        "calibration": m.get("calibration"),
        "train_runtime_s": m.get("train_runtime_s"),
        "train_samples": m.get("train_samples"),
    }
    started = time.time()
    ev = evaluate(
        result.run_dir,
        EvalOptions(
            file=val_file,
            report=full_report,
            robustness=full_report and args.robustness_samples > 0,
            robustness_samples=max(args.robustness_samples, 1),
            batch_size=args.eval_batch_size,
        ),
        log=lambda msg: print(f"[{arm['name']}] {msg}", flush=True),
    )
    out["eval_s"] = round(time.time() - started, 1)
    out["eval_dir"] = str(ev.out_dir)
    import pandas as pd

    preds = pd.read_parquet(ev.out_dir / "predictions.parquet")
    out["positive"] = preds["positive_probability"].tolist()
    out["labels"] = preds["label"].astype(int).tolist()
    out["truncated"] = preds["truncated"].astype(bool).tolist()
    if full_report:
        out["report"] = {
            k: ev.metrics[k] for k in ("intervals", "calibration", "slices") if k in ev.metrics
        }
        out["robustness"] = ev.metrics.get("robustness")
    if long_file is not None:
        long_mask = preds["truncated"].to_numpy(bool)
        y_long = preds["label"].to_numpy(int)[long_mask]
        trunc = compute_metrics(y_long, preds["positive_probability"].to_numpy()[long_mask])
        started = time.time()
        chunked = evaluate(
            result.run_dir,
            EvalOptions(
                file=long_file, long_reviews="chunks", report=False, batch_size=args.eval_batch_size
            ),
        )
        out["long_slice"] = {
            "n": int(long_mask.sum()),
            "truncate_accuracy": trunc["accuracy"],
            "chunks_accuracy": chunked.metrics["accuracy"],
            "truncate_log_loss": trunc["log_loss"],
            "chunks_log_loss": chunked.metrics["log_loss"],
            "chunks_eval_s": round(time.time() - started, 1),
        }
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The section of docs/QUALITY.md for one comparison."""
    lines = [
        f"### {meta['title']}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['machine']}",
        f"- data: `{meta['data']}` (manifest hash `{meta['manifest_hash']}`); "
        f"{meta['train_samples']:,} training reviews (stratified, seed {meta['seed']}), "
        f"{meta['validation_samples']:,} validation reviews, of which "
        f"{meta['long_reviews']:,} are longer than the window",
        f"- budget, same for every arm: {meta['epochs']} epoch(s), learning rate "
        f"{meta['lr']}, batch size {meta['batch_size']}, seed {meta['seed']}",
        "",
        "| arm | val accuracy (95% CI) | Δ vs first arm (paired 95% CI) | long slice: "
        "truncate | long slice: chunks | ECE before → after (cross-fitted) | Brier before "
        "→ after | T | train time |",
        "|---|---|---|---:|---:|---|---|---:|---:|",
    ]
    for r in results:
        iv = (r.get("validation_intervals") or {}).get("accuracy", {})
        acc = r["validation"]["accuracy"]
        acc_s = _pct(acc) + (f" ({_pct(iv['low'])}–{_pct(iv['high'])})" if iv else "")
        d = r.get("paired_vs_first")
        d_s = (
            "—"
            if d is None
            else (
                f"{100 * d['difference']:+.2f} pts "
                f"({100 * d['low']:+.2f} to {100 * d['high']:+.2f})"
            )
        )
        ls = r.get("long_slice") or {}
        c = r.get("calibration") or {}
        ece = (
            f"{c['ece_uncalibrated']:.4f} → {c['ece']:.4f} ({c['ece_crossfit']:.4f})"
            if c
            else "n/a"
        )
        brier = f"{c['brier_uncalibrated']:.4f} → {c['brier']:.4f}" if c else "n/a"
        lines.append(
            f"| {r['arm']['name']} | {acc_s} | {d_s} | "
            f"{_pct(ls['truncate_accuracy']) if ls else 'n/a'} | "
            f"{_pct(ls['chunks_accuracy']) if ls else 'n/a'} | {ece} | {brier} | "
            f"{c.get('temperature', 1.0):.3f} | {r['wall_s_train']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/imdb")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--arms", nargs="+", default=["head:256", "head+tail:256:64"])
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="validation reviews (stratified); default: all",
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--robustness-samples", type=int, default=150)
    parser.add_argument("--output", default="runs/compare-truncation")
    parser.add_argument("--json", dest="json_path", default=None)
    parser.add_argument("--markdown", default=None, help="append the result table to this file")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    arms = [parse_arm(a) for a in args.arms]

    from imdb_sentiment.data import splits as data_mod
    from imdb_sentiment.model_card import manifest_hash
    from imdb_sentiment.modeling.loading import load_tokenizer, resolve_model_name

    out_root = Path(args.output)
    out_root.mkdir(parents=True, exist_ok=True)
    val = data_mod.load_split(args.data, "validation")
    val = data_mod.sample(val, args.eval_samples, args.seed)
    val = val.reset_index(drop=True)
    val_file = out_root / "validation_subset.parquet"
    val.to_parquet(val_file, index=False)
    # The long slice is defined by the shortest window among the arms, identically for all.
    tok = load_tokenizer(resolve_model_name(args.model))
    n_tokens = [
        len(ids)
        for ids in tok(val["text"].tolist(), add_special_tokens=False, verbose=False)["input_ids"]
    ]
    window = min(a["max_length"] for a in arms) - 2
    long_mask = np.asarray(n_tokens) > window
    long_file = out_root / "validation_long.parquet"
    val[long_mask].to_parquet(long_file, index=False)
    print(
        f"validation {len(val):,} reviews, {int(long_mask.sum()):,} longer than {window} tokens",
        flush=True,
    )

    results = []
    for i, arm in enumerate(arms):
        full = arm["truncation"] == "head+tail" or i == len(arms) - 1
        results.append(
            run_arm(arm, args, val_file, long_file if long_mask.any() else None, full_report=full)
        )
        print(
            json.dumps(
                {
                    k: v
                    for k, v in results[-1].items()
                    if k not in ("positive", "labels", "truncated")
                },
                default=str,
            )[:2000],
            flush=True,
        )
    labels = np.asarray(results[0]["labels"])
    for r in results[1:]:
        r["paired_vs_first"] = paired_accuracy_difference(
            labels, np.asarray(results[0]["positive"]), np.asarray(r["positive"])
        )
    manifest = data_mod.load_manifest(args.data)
    meta = {
        "title": args.title or (f"{args.model}, " + " vs ".join(a["name"] for a in arms)),
        "command": "python scripts/compare_truncation.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "data": args.data,
        "manifest_hash": manifest_hash(manifest),
        "train_samples": int(results[0]["train_samples"]),
        "validation_samples": len(val),
        "long_reviews": int(long_mask.sum()),
        "window_tokens": window,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    slim = [
        {k: v for k, v in r.items() if k not in ("positive", "labels", "truncated")}
        for r in results
    ]
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(
            json.dumps({"meta": meta, "arms": slim}, indent=2, default=str) + "\n"
        )
    table = markdown(results, meta)
    print(table)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
