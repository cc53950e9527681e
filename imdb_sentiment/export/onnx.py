"""ONNX export (float32 and dynamic int8) with a parity check against the PyTorch model.

``export_onnx`` writes ``<model>/onnx/model.onnx`` (and ``model.int8.onnx`` with
``quantize="int8"``) plus ``parity.json``. Every file is built in a staging folder and moved into
place only when each exported model agrees with the PyTorch model on at least
:data:`MIN_AGREEMENT` of the parity reviews, so a refused export leaves nothing half-written.
Inference on the exported files goes through :class:`imdb_sentiment.predict.Predictor` (same
tokenization, same temperature) with :class:`OnnxModel` in place of the PyTorch module.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.errors import ConfigError, DataError, MissingExtraError, ModelError

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
PARITY_FILE = "parity.json"
MIN_AGREEMENT = 0.995
"""Share of parity reviews on which an exported model must give PyTorch's label."""
OPSET = 17
FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)

Log = Callable[[str], None]


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError("onnxruntime", "export") from None
    return onnxruntime


class OnnxModel:
    """An exported classifier run by onnxruntime: padded ids and mask in, logits out."""

    def __init__(self, path: str | Path, variant: str = "onnx", threads: int | None = None):
        ort = _require_onnxruntime()
        self.path = Path(path)
        self.variant = variant
        self.precision = "int8" if variant == "onnx-int8" else "fp32"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own, unexported exception types
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ModelError(f"{self.path} is not a usable ONNX model ({reason})") from None
        self.input_names = {i.name for i in self.session.get_inputs()}

    @classmethod
    def load(cls, model_dir: str | Path, *, quantized: bool = False) -> OnnxModel:
        """The exported model next to a saved model; :class:`ModelError` when not exported."""
        name = INT8_FILE if quantized else FP32_FILE
        path = Path(model_dir) / ONNX_DIR / name
        if not path.is_file():
            run = Path(model_dir)
            run = run.parent if run.name == "model" else run
            flag = " --quantize int8" if quantized else ""
            raise ModelError(
                f"no {name} in {path.parent}; create it with: "
                f"imdb-sentiment export {run} --format onnx{flag}"
            )
        return cls(path, "onnx-int8" if quantized else "onnx")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        logits = self.session.run(["logits"], feeds)[0]
        return np.asarray(logits, dtype=np.float32)


@dataclass
class Parity:
    """How closely an exported model reproduces the PyTorch model on the parity reviews."""

    variant: str
    file: str
    n: int
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    passed: bool
    accuracy: float | None = None
    torch_accuracy: float | None = None
    recipe: str | None = None


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote."""

    out_dir: Path
    files: list[Path]
    parity: list[Parity] = field(default_factory=list)
    source: str = ""


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None,
            *, variant: str, file: str, min_agreement: float) -> Parity:
    """Label agreement and positive-probability differences of two ``(n, 2)`` outputs."""
    ref_label = reference[:, 1] >= 0.5
    cand_label = candidate[:, 1] >= 0.5
    diff = np.abs(reference[:, 1] - candidate[:, 1])
    agreement = float(np.mean(ref_label == cand_label))
    acc = torch_acc = None
    if labels is not None:
        acc = float(np.mean(cand_label.astype(int) == labels))
        torch_acc = float(np.mean(ref_label.astype(int) == labels))
    return Parity(variant=variant, file=file, n=len(reference), agreement=agreement,
                  max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                  passed=agreement >= min_agreement, accuracy=acc, torch_accuracy=torch_acc)


def parity_reviews(run: Path, *, file: str | Path | None = None, data_dir: str | Path | None = None,
                   text_column: str = "text", label_column: str = "label",
                   max_samples: int | None = 500) -> tuple[list[str], np.ndarray | None, str]:
    """Reviews (and labels when known) to check an export on: validation, or ``file``."""
    from imdb_sentiment.data import prepare as data_mod
    from imdb_sentiment.runs import run_data_dir

    labels: np.ndarray | None = None
    if file is not None:
        try:
            frame = data_mod.read_labelled_file(file, text_column=text_column,
                                                label_column=label_column)
        except DataError:
            frame = None
        if frame is None:
            texts = data_mod.read_texts_file(file, text_column=text_column)
            source = str(file)
        else:
            texts, labels, source = frame["text"].tolist(), frame["label"].to_numpy(), str(file)
    else:
        folder = Path(data_dir) if data_dir is not None else run_data_dir(run)
        try:
            frame = data_mod.load_split(folder, "validation")
        except DataError as exc:
            raise DataError(f"{exc} (the parity check needs validation reviews; "
                            "pass --data DIR or --file PATH)") from None
        texts, labels = frame["text"].tolist(), frame["label"].to_numpy()
        source = f"validation split of {folder}"
    if max_samples is not None and len(texts) > max_samples:
        pick = np.sort(np.random.default_rng(0).choice(len(texts), max_samples, replace=False))
        texts = [texts[i] for i in pick]
        labels = labels[pick] if labels is not None else None
    if not texts:
        raise DataError(f"no reviews to check the export on in {source}")
    return texts, (labels.astype(int) if labels is not None else None), source


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
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (torch.from_numpy(ids), torch.from_numpy(mask)), str(path), dynamo=False,
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
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
        optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0,
                                   opt_level=1)
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
        part in name for part in ("/intermediate/", "/output/dense/", "/ffn/"))


# Tried in order until one passes the parity check. On x86 CPUs without VNNI (AVX2 only) the
# u8 x s8 kernels can saturate, which ONNX Runtime's docs answer with u8 weights or reduce_range;
# per-channel scales keep MiniLM's small layers accurate. Measured on MiniLM: docs/INFERENCE.md.
INT8_RECIPES = (
    Int8Recipe("fused-u8-per-channel", fused=True, unsigned_weights=True, per_channel=True),
    Int8Recipe("u8-per-channel", fused=False, unsigned_weights=True, per_channel=True),
    Int8Recipe("s8-per-channel-reduced", fused=False, unsigned_weights=False, per_channel=True,
               reduce_range=True),
    # Attention projections, pooler and classifier stay fp32: slower, but closest to PyTorch.
    Int8Recipe("fused-u8-per-channel-ffn-only", fused=True, unsigned_weights=True,
               per_channel=True, ffn_only=True),
    Int8Recipe("u8-per-channel-ffn-only", fused=False, unsigned_weights=True, per_channel=True,
               ffn_only=True),
)


def quantize_int8(src: Path, dst: Path, recipe: Int8Recipe = INT8_RECIPES[0], *,
                  log: Log = print) -> None:
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
        options["nodes_to_exclude"] = [n.name for n in graph.node
                                       if n.op_type in ("MatMul", "Gemm") and not _is_ffn(n.name)]
    quantize_dynamic(str(src), str(dst), weight_type=weight_type, per_channel=recipe.per_channel,
                     reduce_range=recipe.reduce_range,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **options)
    if recipe.fused:
        src.unlink()


def _probabilities(predictor: Predictor, texts: list[str]) -> np.ndarray:
    from imdb_sentiment.metrics.classification import softmax

    return softmax(predictor.logits(predictor.encode(texts)), predictor.settings.temperature)


def export_onnx(
    run: str | Path,
    *,
    quantize: str | None = None,
    file: str | Path | None = None,
    data_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    max_samples: int | None = 500,
    min_agreement: float = MIN_AGREEMENT,
    optimize: bool = True,
    batch_size: int = 32,
    recipes: tuple[Int8Recipe, ...] = INT8_RECIPES,
    log: Log = print,
) -> ExportResult:
    """Export a trained model to ONNX (optionally int8) if it passes the parity check.

    For int8 the recipes are tried in order and the first that passes is kept.
    """
    from imdb_sentiment.inference.predictor import Predictor

    _require_onnxruntime()
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if not 0.0 < min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement must be in (0, 1], got {min_agreement}")
    run_path = Path(run)
    reference = Predictor.from_path(run_path, precision="fp32", batch_size=batch_size)
    model_dir = reference.model_dir or run_path
    texts, labels, source = parity_reviews(run_path, file=file, data_dir=data_dir,
                                           text_column=text_column, label_column=label_column,
                                           max_samples=max_samples)
    out_dir = model_dir / ONNX_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        log(f"exporting {model_dir} to ONNX (opset {OPSET})")
        raw = staging / "raw.onnx"
        export_graph(reference, raw)
        log(f"parity check on {len(texts):,} reviews ({source})")
        ref_probs = _probabilities(reference, texts)

        def check(variant: str, name: str) -> Parity:
            onnx = OnnxModel(staging / name, variant)
            candidate = Predictor(None, reference.tokenizer, reference.settings,
                                  batch_size=batch_size, model_dir=model_dir, onnx=onnx)
            return compare(ref_probs, _probabilities(candidate, texts), labels,
                           variant=variant, file=name, min_agreement=min_agreement)

        reports, names = [], [FP32_FILE]
        if quantize:
            names.append(INT8_FILE)
            tried: list[Parity] = []
            for recipe in recipes if optimize else [r for r in recipes if not r.fused]:
                log(f"quantizing weights to int8 ({recipe.name})")
                quantize_int8(raw, staging / INT8_FILE, recipe, log=log)
                tried.append(check("onnx-int8", INT8_FILE))
                tried[-1].recipe = recipe.name
                log(f"  label agreement {tried[-1].agreement:.2%}, "
                    f"max |Δp| {tried[-1].max_abs_diff:.4f}")
                if tried[-1].passed:
                    break
            if not tried:
                raise ConfigError("no int8 recipe to try")
            reports.append(tried[-1] if tried[-1].passed else
                           max(tried, key=lambda r: r.agreement))
        if optimize:
            optimize_graph(raw, log)
        os.replace(raw, staging / FP32_FILE)
        reports.insert(0, check("onnx", FP32_FILE))
        failed = [r for r in reports if not r.passed]
        if failed:
            r = failed[0]
            which = f"{r.variant} (best int8 recipe: {r.recipe})" if r.recipe else r.variant
            raise ModelError(
                f"export refused: the {which} model gives PyTorch's label on "
                f"{r.agreement:.2%} of {r.n:,} reviews (needs {min_agreement:.1%}; "
                f"max |Δp| {r.max_abs_diff:.4f}); nothing was written"
            )
        report = {"source": source, "n": len(texts), "min_agreement": min_agreement,
                  "temperature": reference.settings.temperature,
                  "max_length": reference.settings.max_length,
                  "models": [asdict(r) for r in reports]}
        (staging / PARITY_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        files = []
        for name in [*names, PARITY_FILE]:
            os.replace(staging / name, out_dir / name)
            files.append(out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not any(out_dir.iterdir()):
            out_dir.rmdir()
    return ExportResult(out_dir=out_dir, files=files, parity=reports, source=source)
