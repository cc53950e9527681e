"""What the commands print: rich tables on stdout, progress and errors on stderr.

Results arrive as the library returns them; nothing here computes, it only lays out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from imdb_sentiment.evaluation.evaluate import EvalResult
    from imdb_sentiment.export.onnx import ExportResult
    from imdb_sentiment.training.loop import TrainResult

console = Console()
# soft_wrap: a message stays one line in logs and pipes, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


def say(message: str) -> None:
    """Progress messages go to stderr so stdout stays clean for --json output."""
    err_console.print(message, highlight=False, markup=False)


def error(message: str) -> None:
    """One ``error: ...`` line on stderr, the message printed as written.

    Escaped, because messages hold brackets (``pip install 'imdb-sentiment[serve]'``) that rich
    would otherwise take for markup and drop, or fail on.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def manifest(manifest: dict[str, Any], output: Path) -> None:
    """Rows and labels of each prepared split."""
    table = Table(title=f"prepared data in {output}")
    for col in ("split", "rows", "negative", "positive"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for name, info in manifest["splits"].items():
        labels = info["labels"]
        table.add_row(
            name, f"{info['rows']:,}", f"{labels['negative']:,}", f"{labels['positive']:,}"
        )
    console.print(table)


def training(result: TrainResult) -> None:
    """Validation metrics and throughput of a finished run, and where the model went."""
    m = result.metrics
    table = Table(title=f"run {result.run_dir}")
    table.add_column("validation metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "f1", "roc_auc", "log_loss"):
        table.add_row(key, f"{m[key]:.4f}")
    table.add_row("reviews", f"{m['n']:,}")
    if m.get("train_samples_per_second"):
        table.add_row("train samples/s", f"{m['train_samples_per_second']:.1f}")
    if m.get("train_step_samples_per_second"):
        table.add_row("  in training steps", f"{m['train_step_samples_per_second']:.1f}")
    table.add_row("processes", str(result.world_size))
    if "calibration" in m:
        table.add_row("temperature", f"{m['calibration']['temperature']:.3f}")
    console.print(table)
    console.print(f"model saved to {result.run_dir / 'model'} (marked as the latest run)")


def evaluation(run_path: Path, result: EvalResult) -> None:
    """The metrics table, then intervals, calibration and robustness when measured."""
    m = result.metrics
    table = Table(title=f"{run_path} on {m['source']} ({m['n']:,} reviews)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "mcc", "log_loss"):
        table.add_row(key, _number(m[key]))
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    table.add_row("confusion [tn fp; fn tp]", f"[{tn} {fp}; {fn} {tp}]")
    console.print(table)
    _evaluation_extras(m)
    wrote(result.files)


def _number(value: float | None) -> str:
    """A metric to four places; ``n/a`` for one that is undefined (null in metrics.json)."""
    return "n/a" if value is None else f"{value:.4f}"


def _evaluation_extras(m: dict[str, Any]) -> None:
    for key in ("accuracy", "f1", "roc_auc"):
        iv = m.get("intervals", {}).get(key)
        if iv and None not in (iv["value"], iv["low"], iv["high"]):
            console.print(f"{key}: {iv['value']:.4f} (95% CI {iv['low']:.4f}-{iv['high']:.4f})")
    cal = m.get("calibration")
    if cal and "ece_uncalibrated" in cal:
        console.print(
            f"ECE {cal['ece_uncalibrated']:.4f} -> {cal['ece']:.4f}, Brier "
            f"{cal['brier_uncalibrated']:.4f} -> {cal['brier']:.4f} "
            f"(temperature {cal['temperature']:.3f})"
        )
    for name, r in m.get("robustness", {}).get("checks", {}).items():
        rate = "n/a" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}"
        console.print(f"robustness {name}: {rate} of {r['cases']:,} passed")


def parity(result: ExportResult) -> None:
    """Agreement of each exported model with PyTorch, then the files written."""
    if not result.parity:  # an attached student: its comparison was logged
        wrote(result.files)
        return
    table = Table(title=f"parity with PyTorch on {result.parity[0].n:,} reviews ({result.source})")
    for col in ("model", "label agreement", "max |Δp|", "mean |Δp|", "accuracy"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in result.parity:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.4f} (torch {r.torch_accuracy:.4f})"
        table.add_row(
            r.file, f"{r.agreement:.2%}", f"{r.max_abs_diff:.4f}", f"{r.mean_abs_diff:.5f}", acc
        )
    console.print(table)
    wrote(result.files)


def wrote(files: Sequence[Path]) -> None:
    """The files a command wrote, on one line."""
    console.print(f"wrote {', '.join(str(f) for f in files)}")


def predictions(texts: Sequence[str], rows: Sequence[dict[str, Any]], *, as_json: bool) -> None:
    """One JSON object per review (``--json``), or a coloured label, probability and preview."""
    # Imported here: text pulls in numpy, which --help need not load.
    from imdb_sentiment.text import LABELS

    if as_json:
        for text, row in zip(texts, rows, strict=True):
            sys.stdout.write(json.dumps({"text": text, **row}, ensure_ascii=False) + "\n")
        return
    colours = dict(zip(LABELS, ("red", "green"), strict=True))
    for text, row in zip(texts, rows, strict=True):
        colour = colours.get(row["label"], "yellow")  # uncertain
        preview = escape(text if len(text) <= 70 else text[:67] + "...")
        console.print(
            f"[{colour}]{row['label']:<8}[/] {row['positive_probability']:.3f}  {preview}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
