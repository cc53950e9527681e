"""The fast GPU path, measured: the plain tutorial recipe, `train` with its defaults, a fast arm.

Made for a GPU machine with torch, transformers and accelerate but no ``datasets`` package, no
``wandb`` and no network: everything it reads is carried in one folder that ``prepare`` fills
here (a float16 copy of the model, 45 MB for MiniLM, and the source's ``train.parquet``):

    python scripts/gpu_fast_path.py prepare --model minilm --source path/to/imdb --carry .carry
    # on the GPU machine, from the repository root:
    python3 scripts/gpu_fast_path.py run --carry .carry --out "$OUT"

``run`` upcasts the model to float32 (training keeps float32 master weights), prepares the data
with ``imdb-sentiment download`` (validation carved from train: 2,491 reviews, seed 42), then runs
each arm in a child process and prints, per arm, the seconds spent loading (data, tokenizer,
model), tokenizing, training, evaluating and saving, the training samples per second and the
validation accuracy, and writes them to ``<out>/gpu_fast_path.json``.

Arms (``--arms``, default all three):

- ``plain``: the Hugging Face text-classification tutorial as written (head 512 truncation,
  dynamic padding, batch 16, lr 2e-5, fp16, evaluate and save each epoch).
- ``default``: ``imdb-sentiment train --model <model>`` with no other flag (its recipe).
- ``fast``: ``default`` plus fused AdamW, a 6% warm-up, 4 loader workers and length-bucketed
  batches whose order is shuffled (see :class:`ShuffledLengthBuckets` for why not transformers'
  ``group_by_length``). A second ``train`` over the same data reads the token cache: the
  ``fast`` arm runs after ``default``, so its tokenize time is the cache's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("plain", "default", "fast")
PHASES = ("load", "tokenize", "train", "evaluate", "save")


# ----------------------------------------------------------------------- on this machine


def prepare_carry(args: argparse.Namespace) -> None:
    """Write the float16 model copy and the training parquet into ``args.carry``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from imdb_sentiment.modeling.loading import resolve_model_name

    carry = Path(args.carry)
    model_dir = carry / "model-fp16"
    name = resolve_model_name(args.model)
    AutoModel.from_pretrained(name, dtype=torch.float16).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(name).save_pretrained(model_dir)
    (carry / "imdb").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(args.source) / "train.parquet", carry / "imdb" / "train.parquet")
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    print(f"{carry}: {size / 2**20:.1f} MiB; ignore it in .git/info/exclude and carry it")


# ----------------------------------------------------------------------- on the GPU machine


class PhaseClock:
    """Seconds per phase, each second counted once: in the innermost phase running then."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self._stack: list[tuple[str, float]] = []

    def wrap(self, owner: Any, attr: str, phase: str) -> None:
        """Count calls of ``owner.attr`` as ``phase`` (skipped where the attribute is gone)."""
        original = getattr(owner, attr, None)
        if original is None:
            print(f"note: {owner.__name__}.{attr} not found; its time counts as other")
            return
        clock = self

        def timed(*a: Any, **kw: Any) -> Any:
            clock._enter(phase)
            try:
                return original(*a, **kw)
            finally:
                clock._leave()

        setattr(owner, attr, timed)

    def _enter(self, phase: str) -> None:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((phase, now))

    def _leave(self) -> None:
        now = time.perf_counter()
        phase, since = self._stack.pop()
        self.seconds[phase] += now - since
        if self._stack:
            self._stack[-1] = (self._stack[-1][0], now)


class ShuffledLengthBuckets:
    """Batches of reviews of similar length, in random order, reshuffled every epoch.

    Why not transformers' ``group_by_length`` (``train_sampling_strategy="group_by_length"``
    in 5.x): it also swaps the *evaluation* sampler (``Trainer._get_eval_sampler``) for a
    ``LengthGroupedSampler``, so ``evaluate`` and ``predict`` return validation rows in a
    length-sorted permutation. Scores computed from Trainer's own ``label_ids`` stay right,
    but anything that pairs the logits with the dataset's rows (our per-review predictions
    file, an accuracy against the frame's labels) pairs them at random: checked on
    transformers 5.24, such pairing agrees on 51% of 200 rows. That is the likely cause of the
    run that "collapsed to 50%". A second, smaller risk: the sampler sorts each mega-batch of 50
    batches longest first and puts the longest batch of all first, so the run opens on its
    longest reviews at the full learning rate (our recipes had no warm-up) and steps walk from
    512-token reviews to the shortest 50 times an epoch, the setting in which BERT
    fine-tuning is known to collapse to one class (Mosbach et al., 2021).

    Guards: only the training sampler is replaced (evaluation stays in row order, and the
    script checks that the saved predictions reproduce the run's accuracy); batches are cut
    from length-sorted mega-batches (the padding saving) but their order is shuffled; the arm
    warms up for 6% of its steps; and ``train`` refuses to save a model at chance (exit 6).
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, mega: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.mega = lengths, batch_size, seed, mega
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import torch

        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        size = self.batch_size * self.mega
        batches = []
        for start in range(0, len(order), size):
            group = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [
                group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)
            ]
        # A short batch stays last: anywhere else it would shift every later batch's bounds.
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        for b in torch.randperm(len(full), generator=gen).tolist():
            yield from full[b]
        for batch in short:
            yield from batch


def _fast_patches(seed: int) -> None:
    """Fused AdamW and shuffled length buckets, on the Trainer that ``train`` builds."""
    import numpy as np
    from transformers import Trainer
    from transformers.training_args import OptimizerNames

    from imdb_sentiment.training import loop

    make_args = loop.training_arguments

    def fast_arguments(*a: Any, **kw: Any) -> Any:
        targs = make_args(*a, **kw)
        targs.optim = OptimizerNames.ADAMW_TORCH_FUSED
        return targs

    loop.training_arguments = fast_arguments  # type: ignore[assignment]

    def sampler(self: Any, train_dataset: Any = None) -> Any:
        data = train_dataset if train_dataset is not None else self.train_dataset
        lengths = np.diff(data.offsets).tolist()
        print(
            f"fast arm: optimizer {self.args.optim}, shuffled length buckets of "
            f"{self.args.train_batch_size}",
            flush=True,
        )
        return ShuffledLengthBuckets(lengths, self.args.train_batch_size, seed)

    Trainer._get_train_sampler = sampler  # type: ignore[method-assign]


def _clock_library(clock: PhaseClock) -> None:
    from transformers import Trainer

    from imdb_sentiment.data import splits
    from imdb_sentiment.training import loop

    for owner, attr, phase in (
        (splits, "load_split", "load"),
        (loop, "load_tokenizer", "load"),
        (loop, "load_model_for_training", "load"),
        (loop, "encoded_reviews", "tokenize"),
        (Trainer, "train", "train"),
        (Trainer, "evaluate", "evaluate"),
        (Trainer, "predict", "evaluate"),
        (loop, "_score", "evaluate"),
        (loop, "_save", "save"),
    ):
        clock.wrap(owner, attr, phase)


def train_arm(arm: str, model: str, data: str, runs: str, limit: int = 0) -> dict[str, Any]:
    """One ``imdb-sentiment train`` command, in this process, phase by phase."""
    from imdb_sentiment.cli.app import app

    clock = PhaseClock()
    _clock_library(clock)
    argv = [
        "train",
        "--model",
        model,
        "--data",
        data,
        "--output-dir",
        runs,
        "--run-name",
        arm,
        "--overwrite",
        "--report-to",
        "none",
    ]
    if limit:
        argv += [
            "--max-train-samples",
            str(limit),
            "--max-eval-samples",
            str(limit),
            "--max-length",
            "64",
            "--epochs",
            "1",
        ]
    if arm == "fast":
        _fast_patches(seed=42)
        argv += [
            "--set",
            "training.warmup_ratio=0.06",
            "--set",
            "training.dataloader_num_workers=4",
        ]
    start = time.perf_counter()
    try:
        returned = app(args=argv, standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    total = time.perf_counter() - start
    metrics_file = Path(runs) / arm / "metrics.json"
    metrics = json.loads(metrics_file.read_text())["metrics"] if metrics_file.is_file() else {}
    return {
        "exit_code": code,
        "command_s": total,
        "phases": clock.seconds,
        "predictions_in_row_order": _aligned(Path(runs) / arm, metrics),
        "accuracy": metrics.get("accuracy"),
        "intervals": metrics.get("intervals"),
        "train_samples_per_second": metrics.get("train_samples_per_second"),
        "train_samples": metrics.get("train_samples"),
        "n": metrics.get("n"),
        "epochs": metrics.get("epochs_completed"),
        "precision": metrics.get("training_precision"),
    }


def _aligned(run_dir: Path, metrics: dict[str, Any]) -> bool | None:
    """Whether the saved per-review predictions pair each review with its own logits: their
    accuracy, against the validation rows' labels, must equal the run's accuracy. A sampler
    that reorders evaluation (transformers' group_by_length does) scores about 50% here."""
    import pandas as pd

    path = run_dir / "validation_predictions.parquet"
    if not path.is_file() or metrics.get("accuracy") is None:
        return None
    return bool(abs(pd.read_parquet(path)["correct"].mean() - metrics["accuracy"]) < 1e-9)


def plain_arm(model: str, data: str, runs: str, limit: int = 0) -> dict[str, Any]:
    """The Hugging Face tutorial recipe, on the same prepared splits, without ``datasets``."""
    import numpy as np
    import pandas as pd
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    clock = PhaseClock()
    for owner, attr, phase in (
        (pd, "read_parquet", "load"),
        (Trainer, "train", "train"),
        (Trainer, "evaluate", "evaluate"),
        (Trainer, "save_model", "save"),
    ):
        clock.wrap(owner, attr, phase)
    start = time.perf_counter()
    clock._enter("load")
    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=2, dtype=torch.float32
    )
    frames = {s: pd.read_parquet(Path(data) / f"{s}.parquet") for s in ("train", "validation")}
    if limit:
        frames = {s: f.sample(min(limit, len(f)), random_state=42) for s, f in frames.items()}
    clock._leave()
    clock._enter("tokenize")
    sets = {}
    for split, frame in frames.items():
        enc = tok(frame["text"].tolist(), truncation=True, max_length=64 if limit else 512)
        sets[split] = [
            {"input_ids": ids, "attention_mask": mask, "label": int(y)}
            for ids, mask, y in zip(
                enc["input_ids"], enc["attention_mask"], frame["label"], strict=True
            )
        ]
    clock._leave()

    def accuracy(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    targs = TrainingArguments(
        output_dir=f"{runs}/plain",
        learning_rate=2e-5,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        num_train_epochs=1 if limit else 2,
        weight_decay=0.01,
        fp16=torch.cuda.is_available(),  # the tutorial's fp16, where there is a GPU for it
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=net,
        args=targs,
        train_dataset=sets["train"],
        eval_dataset=sets["validation"],
        processing_class=tok,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=accuracy,
    )
    out = trainer.train()
    final = trainer.evaluate()
    trainer.save_model(f"{runs}/plain/model")
    return {
        "exit_code": 0,
        "command_s": time.perf_counter() - start,
        "phases": clock.seconds,
        "accuracy": final["eval_accuracy"],
        "n": len(sets["validation"]),
        "train_samples": len(sets["train"]),
        "train_samples_per_second": out.metrics.get("train_samples_per_second"),
        "epochs": out.metrics.get("epoch"),
        "precision": "fp16" if torch.cuda.is_available() else "fp32",
    }


def _child(args: argparse.Namespace) -> None:
    """Run one arm in this (child) process and print its result as the last line."""
    if args.arm == "plain":
        result = plain_arm(args.model, args.data, args.runs, args.limit)
    else:
        result = train_arm(args.arm, args.model, args.data, args.runs, args.limit)
    print("RESULT " + json.dumps(result, default=str), flush=True)


def _preflight() -> dict[str, Any]:
    import importlib.util

    import accelerate
    import torch
    import transformers

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "datasets_installed": importlib.util.find_spec("datasets") is not None,
    }
    print("preflight:", json.dumps(info), flush=True)
    import imdb_sentiment.cli.app  # noqa: F401  (the train path must import without datasets)

    info["datasets_imported_by_train_path"] = "datasets" in sys.modules
    return info


def _upcast(carry: Path, work: Path) -> tuple[str, float]:
    """The carried float16 model saved as float32 (what both recipes start from)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    target = work / "model-fp32"
    AutoModel.from_pretrained(carry / "model-fp16", dtype=torch.float32).save_pretrained(target)
    AutoTokenizer.from_pretrained(carry / "model-fp16").save_pretrained(target)
    return str(target), time.perf_counter() - start


def run_all(args: argparse.Namespace) -> None:
    """Prepare model and data, run each arm in its own process, print and save the table."""
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"preflight": _preflight(), "arms": {}}
    model, report["upcast_s"] = _upcast(Path(args.carry), work)
    from imdb_sentiment.data.prepare import prepare

    start = time.perf_counter()
    data = work / "imdb"
    prepare(str(Path(args.carry) / "imdb"), data, force=True, log=lambda _m: None)
    report["prepare_data_s"] = time.perf_counter() - start
    for arm in args.arms.split(","):
        report["arms"][arm] = _spawn(
            arm, model, str(data), str(work / "runs"), args.arm_timeout, args.limit
        )
        (out / "gpu_fast_path.json").write_text(json.dumps(report, indent=2, default=str))
    print(_table(report))


def _spawn(arm: str, model: str, data: str, runs: str, timeout: int, limit: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "child",
        "--arm",
        arm,
        "--model",
        model,
        "--data",
        data,
        "--runs",
        runs,
        "--limit",
        str(limit),
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout} s"}
    wall = time.perf_counter() - start
    lines = done.stdout.splitlines()
    result = next((json.loads(x[7:]) for x in reversed(lines) if x.startswith("RESULT ")), None)
    if result is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        print(f"{arm} failed:\n" + "\n".join(tail), flush=True)
        return {"error": tail, "wall_s": wall}
    result["process_s"] = wall
    print(f"{arm}: {json.dumps(result, default=str)}", flush=True)
    return result


def _table(report: dict[str, Any]) -> str:
    head = (
        f"{'arm':<8} {'acc':>7} {'process':>8} {'command':>8} "
        + " ".join(f"{p:>9}" for p in PHASES)
        + f" {'other':>6} {'samples/s':>9}"
    )
    rows = [head]
    for arm, r in report["arms"].items():
        if "error" in r:
            rows.append(f"{arm:<8} failed: {r['error']}")
            continue
        phases = r["phases"]
        other = r["command_s"] - sum(phases.values())
        acc = f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "-"
        rows.append(
            f"{arm:<8} {acc:>7} {r['process_s']:>7.1f}s {r['command_s']:>7.1f}s "
            + " ".join(f"{phases[p]:>8.1f}s" for p in PHASES)
            + f" {other:>5.1f}s {r.get('train_samples_per_second') or 0:>9.0f}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("prepare", help="fill the carry folder (here)")
    p.add_argument("--model", default="minilm")
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "imdb"))
    p.add_argument("--carry", default=".carry")
    r = sub.add_parser("run", help="run the arms (on the GPU machine)")
    r.add_argument("--carry", default=".carry")
    r.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    r.add_argument("--work", default="/tmp/gpu-fast-path")
    r.add_argument("--arms", default=",".join(ARMS))
    r.add_argument("--arm-timeout", type=int, default=240)
    r.add_argument(
        "--limit",
        type=int,
        default=0,
        help="reviews per split and 1 epoch at 64 tokens: a smoke test of the script",
    )
    c = sub.add_parser("child")
    for flag in ("--arm", "--model", "--data", "--runs"):
        c.add_argument(flag, required=True)
    c.add_argument("--limit", type=int, default=0)
    args = parser.parse_args(argv)
    verbs: dict[str, Callable[[argparse.Namespace], None]] = {
        "prepare": prepare_carry,
        "run": run_all,
        "child": _child,
    }
    verbs[args.verb](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
