"""PyTorch dynamic int8, kept only when it passes the parity check: ``export --format torch-int8``.

Every Linear layer is tried in int8 first. When that misses the parity check, each layer's own
int8 error is measured on calibration reviews (the first :data:`CALIBRATION_REVIEWS` parity
reviews, one layer in int8 at a time) and the worst layers are kept in fp32, a few more at a
time (:data:`KEEP_STEPS`), until the whole model passes. The passing plan, with its parity
report, goes to ``<model>/int8.json`` (:mod:`imdb_sentiment.inference.quantize`); nothing is
written when no plan that keeps at most half the layers in fp32 passes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.atomic import write_json
from imdb_sentiment.errors import ModelError
from imdb_sentiment.export.parity import (
    MAX_ACCURACY_DROP,
    Parity,
    compare,
    probabilities,
    refuse_failed,
)
from imdb_sentiment.hardware import cpu_name, int8_kernel
from imdb_sentiment.inference.backends import TorchModel
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.inference.quantize import ENGINE, PLAN_VERSION, linear_names, plan_path

if TYPE_CHECKING:
    from imdb_sentiment.export.onnx import ExportOptions, ExportResult, Log

CALIBRATION_REVIEWS = 64
KEEP_STEPS = (0, 1, 2, 3, 4, 6, 8, 10, 12, 16)
"""How many of the most sensitive Linear layers stay fp32, tried in this order."""
VARIANT = "torch-int8"
FASTER = 0.9
"""int8 must take at most this share of fp32's time on the parity reviews for auto to use it."""


class _Candidates:
    """Builds int8 copies of the fp32 reference model and scores them against it."""

    def __init__(
        self, reference: Predictor, texts: list[str], labels: np.ndarray | None, opts: ExportOptions
    ) -> None:
        if reference.model is None:
            raise ModelError("the torch-int8 export needs the PyTorch model (backend torch)")
        self.reference, self.texts, self.labels, self.opts = reference, texts, labels, opts
        self.names = linear_names(reference.model)
        start = time.perf_counter()
        self.expected = probabilities(reference, texts)
        self.fp32_seconds = time.perf_counter() - start
        self.int8_seconds: dict[int, float] = {}

    def predictor(self, keep_fp32: list[str]) -> Predictor:
        r = self.reference
        module = copy.deepcopy(r.model)
        runtime = TorchModel(
            module,  # type: ignore[arg-type]
            device="cpu",
            precision="int8",
            int8_plan={"keep_fp32": keep_fp32},
        )
        return Predictor(
            runtime, r.tokenizer, r.settings, batch_size=self.opts.batch_size, model_dir=r.model_dir
        )

    def parity(self, keep_fp32: list[str]) -> Parity:
        candidate = self.predictor(keep_fp32)
        start = time.perf_counter()
        probs = probabilities(candidate, self.texts)
        self.int8_seconds[len(keep_fp32)] = time.perf_counter() - start
        report = compare(
            self.expected,
            probs,
            self.labels,
            variant=VARIANT,
            file=plan_path("").name,
            min_agreement=self.opts.min_agreement,
        )
        report.recipe = f"{len(self.names) - len(keep_fp32)}/{len(self.names)} Linear int8"
        return report

    def sensitivity(self) -> list[tuple[str, float]]:
        """Mean |Δp| each Linear layer causes alone in int8, most harmful first."""
        calib = self.texts[:CALIBRATION_REVIEWS]
        expected = self.expected[:CALIBRATION_REVIEWS, 1]
        scores = []
        for name in self.names:
            others = [n for n in self.names if n != name]
            probs = probabilities(self.predictor(others), calib)[:, 1]
            scores.append((name, float(np.abs(probs - expected).mean())))
        return sorted(scores, key=lambda s: -s[1])


def search_plan(candidates: _Candidates, log: Log) -> tuple[list[str], Parity, list]:
    """The fewest fp32 layers that pass: (kept fp32, its parity, the sensitivity ranking)."""
    names = candidates.names
    tried = [candidates.parity([])]
    log(f"  all {len(names)} Linear layers int8: agreement {tried[-1].agreement:.2%}")
    if tried[-1].passed:
        return [], tried[-1], []
    ranking = candidates.sensitivity()
    log("  most sensitive layers: " + ", ".join(f"{n} ({s:.4f})" for n, s in ranking[:4]))
    for k in KEEP_STEPS[1:]:
        if k > len(names) // 2:
            break
        keep = [n for n, _ in ranking[:k]]
        tried.append(candidates.parity(keep))
        log(
            f"  {k} kept fp32: agreement {tried[-1].agreement:.2%}, accuracy "
            f"{tried[-1].accuracy if tried[-1].accuracy is not None else '-'}"
        )
        if tried[-1].passed:
            return keep, tried[-1], ranking
    best = max(tried, key=lambda r: r.agreement)
    refuse_failed([best], candidates.opts.min_agreement)
    raise AssertionError("unreachable: refuse_failed raises on a failed report")


def export_torch_int8(run: str | Path, opts: ExportOptions, *, log: Log = print) -> ExportResult:
    """Measure which Linear layers may run in int8 and write the plan if it passes parity."""
    from imdb_sentiment.export.onnx import ExportResult, reference_and_reviews

    run_path = Path(run)
    reference, texts, labels, source = reference_and_reviews(run_path, opts)
    model_dir = reference.model_dir or run_path
    log(
        f"dynamic int8 (per-channel weights) of {model_dir}; parity check on "
        f"{len(texts):,} reviews ({source})"
    )
    candidates = _Candidates(reference, texts, labels, opts)
    keep, report, ranking = search_plan(candidates, log)
    # Timed on the parity reviews the check already ran: int8 with several layers kept fp32
    # was measured slower than fp32 on a Xeon (docs/INFERENCE.md), so auto uses a plan only
    # where it was faster on the machine that checked it.
    fp32_s, int8_s = candidates.fp32_seconds, candidates.int8_seconds[len(keep)]
    faster = int8_s < FASTER * fp32_s
    log(
        f"  fp32 {fp32_s:.1f}s, int8 {int8_s:.1f}s on the parity reviews: "
        f"{'auto will use int8' if faster else 'not faster, auto keeps fp32'}"
    )
    path = plan_path(model_dir)
    write_json(
        path,
        {
            "format_version": PLAN_VERSION,
            "passed": True,
            "engine": ENGINE,
            "keep_fp32": keep,
            "linear_layers": len(candidates.names),
            "source": source,
            "n": len(texts),
            "min_agreement": opts.min_agreement,
            "max_accuracy_drop": MAX_ACCURACY_DROP,
            "max_length": reference.settings.max_length,
            "checked_on": {"cpu": cpu_name(), "int8_kernel": int8_kernel()},
            "fp32_seconds": fp32_s,
            "int8_seconds": int8_s,
            "faster": faster,
            "sensitivity": [{"layer": n, "mean_abs_dp": s} for n, s in ranking],
            "parity": asdict(report),
        },
    )
    return ExportResult(out_dir=model_dir, files=[path], parity=[report], source=source)
