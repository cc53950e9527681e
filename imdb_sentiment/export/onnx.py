"""ONNX export (float32 and dynamic int8), kept only when it passes the parity check.

``export_onnx`` writes ``<model>/onnx/model.onnx`` (and ``model.int8.onnx`` with
``quantize="int8"``) plus ``parity.json``. Every file is built in a staging folder and moved into
place only when each exported model agrees with the PyTorch model on at least
:data:`~imdb_sentiment.export.parity.MIN_AGREEMENT` of the parity reviews, so a refused export
leaves nothing half-written. Export depends on inference, never the reverse: the exported files
are run by :class:`~imdb_sentiment.inference.backends.OnnxModel` inside the same
:class:`~imdb_sentiment.inference.predictor.Predictor` (same tokenization, same temperature).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.atomic import write_json
from imdb_sentiment.data.storage import check_free_space, check_writable
from imdb_sentiment.errors import ConfigError, ModelError
from imdb_sentiment.export.parity import (
    MIN_AGREEMENT,
    Parity,
    compare,
    parity_reviews,
    probabilities,
    refuse_failed,
)
from imdb_sentiment.inference.backends import (
    FP32_FILE,
    INT8_FILE,
    ONNX_DIR,
    OnnxModel,
    require_onnxruntime,
)
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.modeling.loading import find_model_dir

if TYPE_CHECKING:
    import numpy as np

PARITY_FILE = "parity.json"
OPSET = 17
QUANTIZATIONS = ("int8",)

Log = Callable[[str], None]


def export_graph(predictor: Predictor, path: Path) -> None:
    """Trace the PyTorch model to ONNX with dynamic batch and sequence axes."""
    import warnings

    import torch

    model = predictor.model
    if model is None:
        raise ModelError("export needs the PyTorch model (backend torch)")

    class _Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits

    # The exporter restores the wrapper's train/eval mode on the way out, so the wrapper must be
    # in eval mode too, or dropout is left switched on in the PyTorch model afterwards.
    wrapper = _Logits(model).eval()
    enc = predictor.encode(["a short review", "another, somewhat longer review of a film"])
    _, ids, mask = next(iter(predictor._batches(enc)))
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    model.eval()


def optimize_graph(path: Path, log: Log) -> None:
    """Fuse attention/LayerNorm/GELU with onnxruntime's transformer optimizer, in place.

    Kept only when it succeeds; the plain graph is already correct, so a failure just logs.
    """
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError:  # pragma: no cover - ships with onnxruntime
        return
    try:
        # BERT, MiniLM, DistilBERT and RoBERTa graphs share the patterns the "bert" type fuses.
        optimized = optimize_model(
            str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=1
        )
        optimized.save_model_to_file(str(path))
    except Exception as exc:  # the optimizer raises a variety of errors on unknown patterns
        log(f"onnx graph optimization skipped ({type(exc).__name__}: {str(exc)[:120]})")


@dataclass(frozen=True)
class Int8Recipe:
    """One way of quantizing: which graph, which weight type, per-channel scales or not."""

    name: str
    fused: bool
    unsigned_weights: bool
    per_channel: bool
    reduce_range: bool = False
    ffn_only: bool = False  # quantize only the feed-forward MatMuls (2/3 of the FLOPs)


def _is_ffn(node_name: str) -> bool:
    """Feed-forward layers of BERT-like (``intermediate``/``output``) and DistilBERT (``ffn``)."""
    name = node_name.lower()
    return "attention" not in name and any(
        part in name for part in ("/intermediate/", "/output/dense/", "/ffn/")
    )


# Tried in order until one passes the parity check. On x86 CPUs without VNNI (AVX2 only) the
# u8 x s8 kernels can saturate, which ONNX Runtime's docs answer with u8 weights or reduce_range;
# per-channel scales keep MiniLM's small layers accurate. Measured on MiniLM: docs/INFERENCE.md.
INT8_RECIPES = (
    Int8Recipe("fused-u8-per-channel", fused=True, unsigned_weights=True, per_channel=True),
    Int8Recipe("u8-per-channel", fused=False, unsigned_weights=True, per_channel=True),
    Int8Recipe(
        "s8-per-channel-reduced",
        fused=False,
        unsigned_weights=False,
        per_channel=True,
        reduce_range=True,
    ),
    # Attention projections, pooler and classifier stay fp32: slower, but closest to PyTorch.
    Int8Recipe(
        "fused-u8-per-channel-ffn-only",
        fused=True,
        unsigned_weights=True,
        per_channel=True,
        ffn_only=True,
    ),
    Int8Recipe(
        "u8-per-channel-ffn-only",
        fused=False,
        unsigned_weights=True,
        per_channel=True,
        ffn_only=True,
    ),
)


def quantize_int8(
    src: Path, dst: Path, recipe: Int8Recipe = INT8_RECIPES[0], *, log: Log = print
) -> None:
    """Dynamic int8 quantization of the weights (activations quantized at run time)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger("root").setLevel(logging.ERROR)
    if recipe.fused:
        # Fusing first lets attention and LayerNorm run as single kernels around the int8
        # MatMuls; the fused ops are outside shape inference, so name the default type.
        fused = dst.with_name("fused.onnx")
        shutil.copyfile(src, fused)
        optimize_graph(fused, log)
        src = fused
    weight_type = QuantType.QUInt8 if recipe.unsigned_weights else QuantType.QInt8
    options: dict[str, Any] = {}
    if recipe.ffn_only:
        graph = onnx.load(str(src), load_external_data=False).graph
        options["op_types_to_quantize"] = ["MatMul"]
        options["nodes_to_exclude"] = [
            n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and not _is_ffn(n.name)
        ]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=weight_type,
        per_channel=recipe.per_channel,
        reduce_range=recipe.reduce_range,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        **options,
    )
    if recipe.fused:
        src.unlink()


@dataclass(frozen=True)
class ExportOptions:
    """What ``export_onnx`` writes and how it checks it (the ``export`` flags)."""

    quantize: str | None = None
    """``int8`` also writes a dynamically quantized model."""
    file: str | Path | None = None
    """Check parity on this file's reviews instead of the run's validation split."""
    data_dir: str | Path | None = None
    text_column: str = "text"
    label_column: str = "label"
    max_samples: int | None = 500
    min_agreement: float = MIN_AGREEMENT
    optimize: bool = True
    batch_size: int = 32
    recipes: tuple[Int8Recipe, ...] = INT8_RECIPES
    student: str | Path | None = None
    """``--format cpu-student``: the distilled student run to attach."""

    def __post_init__(self) -> None:
        """Reject bad flag values (exit 2) before any model is loaded."""
        if self.quantize is not None and self.quantize not in QUANTIZATIONS:
            raise ConfigError(
                f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {self.quantize!r}"
            )
        if not 0.0 < self.min_agreement <= 1.0:
            raise ConfigError(f"--min-agreement must be in (0, 1], got {self.min_agreement}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"--max-samples must be at least 1, got {self.max_samples}")


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote."""

    out_dir: Path
    files: list[Path]
    parity: list[Parity] = field(default_factory=list)
    source: str = ""


def reference_and_reviews(
    run: Path, opts: ExportOptions
) -> tuple[Predictor, list[str], np.ndarray | None, str]:
    """The fp32 PyTorch model every export is checked against, and the reviews to check on."""
    reference = Predictor.from_path(run, precision="fp32", batch_size=opts.batch_size)
    texts, labels, source = parity_reviews(
        run,
        file=opts.file,
        data_dir=opts.data_dir,
        text_column=opts.text_column,
        label_column=opts.label_column,
        max_samples=opts.max_samples,
    )
    return reference, texts, labels, source


class _ParityCheck:
    """Scores one staged ONNX file against the PyTorch reference on the parity reviews."""

    def __init__(
        self,
        reference: Predictor,
        texts: list[str],
        labels: np.ndarray | None,
        staging: Path,
        opts: ExportOptions,
    ) -> None:
        self.reference, self.texts, self.labels = reference, texts, labels
        self.staging, self.opts = staging, opts
        self.expected = probabilities(reference, texts)

    def __call__(self, variant: str, name: str) -> Parity:
        r = self.reference
        candidate = Predictor(
            OnnxModel(self.staging / name, variant),
            r.tokenizer,
            r.settings,
            batch_size=self.opts.batch_size,
            model_dir=r.model_dir,
        )
        return compare(
            self.expected,
            probabilities(candidate, self.texts),
            self.labels,
            variant=variant,
            file=name,
            min_agreement=self.opts.min_agreement,
        )


def _quantize_first_passing(raw: Path, check: _ParityCheck, log: Log) -> Parity:
    """Try the int8 recipes in order; the first that passes, else the closest one."""
    opts = check.opts
    recipes = opts.recipes if opts.optimize else tuple(r for r in opts.recipes if not r.fused)
    if not recipes:
        raise ConfigError("no int8 recipe to try")
    tried: list[Parity] = []
    for recipe in recipes:
        log(f"quantizing weights to int8 ({recipe.name})")
        quantize_int8(raw, check.staging / INT8_FILE, recipe, log=log)
        tried.append(check("onnx-int8", INT8_FILE))
        tried[-1].recipe = recipe.name
        log(f"  label agreement {tried[-1].agreement:.2%}, max |Δp| {tried[-1].max_abs_diff:.4f}")
        if tried[-1].passed:
            return tried[-1]
    return max(tried, key=lambda r: r.agreement)


@contextmanager
def _staging(out_dir: Path) -> Iterator[Path]:
    """A private folder inside ``out_dir``, removed afterwards (and ``out_dir`` if left empty)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not any(out_dir.iterdir()):
            out_dir.rmdir()


def _stage_models(raw: Path, check: _ParityCheck, log: Log) -> list[Parity]:
    """Turn the traced graph into the fp32 (and int8) files; their parity, fp32 first."""
    opts, staging = check.opts, check.staging
    reports = [_quantize_first_passing(raw, check, log)] if opts.quantize else []
    if opts.optimize:
        optimize_graph(raw, log)
    os.replace(raw, staging / FP32_FILE)
    return [check("onnx", FP32_FILE), *reports]


def check_destination(out_dir: Path, *, quantize: bool) -> None:
    """Refuse, before any model loads, an ONNX folder that cannot be written or lacks room.

    The staged graphs take about twice the weights (the traced graph and its fused copy), and
    the int8 model a third more.
    """
    check_writable(
        out_dir,
        hint="export needs to write beside the model; copy the run "
        "somewhere writable and export that copy",
    )
    weights = sum(
        p.stat().st_size
        for p in out_dir.parent.glob("*")
        if p.suffix in (".safetensors", ".bin") and p.is_file()
    )
    check_free_space(out_dir, int(weights * (3.3 if quantize else 2)), "the ONNX export")


def export_onnx(
    run: str | Path, options: ExportOptions | None = None, *, log: Log = print
) -> ExportResult:
    """Export a trained model to ONNX (optionally int8) if it passes the parity check.

    For int8 the recipes are tried in order and the first that passes is kept. Nothing is
    written when a model fails: :class:`ModelError` says which and by how much.
    """
    opts = options or ExportOptions()
    require_onnxruntime()
    run_path = Path(run)
    check_destination(find_model_dir(run_path) / ONNX_DIR, quantize=opts.quantize is not None)
    reference, texts, labels, source = reference_and_reviews(run_path, opts)
    out_dir = (reference.model_dir or run_path) / ONNX_DIR
    with _staging(out_dir) as staging:
        log(f"exporting {reference.model_dir or run_path} to ONNX (opset {OPSET})")
        raw = staging / "raw.onnx"
        export_graph(reference, raw)
        log(f"parity check on {len(texts):,} reviews ({source})")
        check = _ParityCheck(reference, texts, labels, staging, opts)
        reports = _stage_models(raw, check, log)
        refuse_failed(reports, opts.min_agreement)
        s = reference.settings
        write_json(
            staging / PARITY_FILE,
            {
                "source": source,
                "n": len(texts),
                "min_agreement": opts.min_agreement,
                "temperature": s.temperature,
                "max_length": s.max_length,
                "models": [asdict(r) for r in reports],
            },
        )
        files = []
        for name in [r.file for r in reports] + [PARITY_FILE]:
            os.replace(staging / name, out_dir / name)
            files.append(out_dir / name)
    return ExportResult(out_dir=out_dir, files=files, parity=reports, source=source)
