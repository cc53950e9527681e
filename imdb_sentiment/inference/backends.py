"""The backends a :class:`~imdb_sentiment.inference.predictor.Predictor` runs a model on.

Each runtime takes padded ``int64`` ids and mask and returns ``float32`` logits, so the Predictor
batches, encodes and calibrates the same way whichever one it holds: :class:`TorchModel` (the
saved weights, fp32, bf16 or int8) or :class:`OnnxModel` (the files ``export`` wrote).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from imdb_sentiment.errors import ConfigError, MissingExtraError, ModelError
from imdb_sentiment.hardware import cpu_has_fast_int8, cpu_has_native_bf16, int8_kernel
from imdb_sentiment.inference.cls_only import read_first_token
from imdb_sentiment.inference.compiled import COMPILED, compile_bf16, eager_forward
from imdb_sentiment.inference.cpu_student import attached_student, runs_student
from imdb_sentiment.inference.fused import fuse_checked
from imdb_sentiment.inference.quantize import quantize_linears, read_plan, require_plan

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from imdb_sentiment.modeling.loading import InferenceSettings

BACKENDS = ("torch", "onnx", "onnx-int8")
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", COMPILED, "int8")
"""``--precision`` of predict and serve (training has its own set, with fp16). ``bf16-compiled``
is bf16 through ``torch.compile`` (:mod:`imdb_sentiment.inference.compiled`), never chosen by
``auto`` because compiling takes 10-35 s at load."""
BF16_PRECISIONS = ("bf16", COMPILED)

ONNX_DIR = "onnx"
"""Folder, inside a saved model, that holds the exported ONNX files."""
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"

# bf16 parity with fp32, measured with scripts/bench_inference.py on 1,000 real IMDB validation
# reviews (MiniLM fine-tuned on 2,000 reviews, 128 tokens; docs/INFERENCE.md): labels agree on
# 99.9%, |Δp| max 0.0115, mean 0.0008, accuracy 0.817 vs 0.816. The tolerance we hold bf16 to
# (and test) is below. "auto" picks bf16 only where the CPU computes it natively (AMX or
# AVX512-BF16); elsewhere bf16 is emulated and was 3x slower than fp32, so auto stays fp32.
BF16_MIN_AGREEMENT = 0.995
BF16_MAX_ABS_DIFF = 0.05


class Runtime(Protocol):
    """What a Predictor needs from a runtime."""

    name: str
    """``torch``, ``onnx`` or ``onnx-int8``."""
    precision: str
    """What it computes in: ``fp32``, ``bf16``, ``bf16-compiled`` or ``int8``."""

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def check_backend(backend: str) -> str:
    """Validate a ``--backend`` value; :class:`ConfigError` names the choices."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def check_precision(precision: str, backend: str = "torch") -> str:
    """Validate a ``--precision`` value for ``backend`` (only torch runs in bf16 or int8)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(
            f"--precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}"
        )
    if backend != "torch" and precision not in ("auto", "fp32"):
        raise ConfigError(f"--precision {precision} applies to the torch backend only")
    return precision


def inference_precision(precision: str, device_type: str, *, int8_ready: bool = False) -> str:
    """Validate an inference precision and turn ``auto`` into what runs fastest on a device.

    On a CPU, ``auto`` is bf16 where bf16 is native (AMX, AVX512-BF16), else int8 where the
    model has an int8 plan that passed the parity check (``int8_ready``) and the CPU has the
    int8 kernels (AVX2 or better), else fp32. A parity-refused plan is never written, so it
    can never be chosen.
    """
    check_precision(precision)
    if precision == "int8" and device_type != "cpu":
        raise ConfigError("--precision int8 runs on the CPU only (dynamic int8 quantization)")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device_type != "cpu":
        return "fp32"
    if cpu_has_native_bf16():
        return "bf16"
    return "int8" if int8_ready and cpu_has_fast_int8() else "fp32"


class TorchModel:
    """A PyTorch classifier on one device in fp32, bf16 or int8: padded ids and mask in, logits out.

    ``int8_plan`` is the model's passed int8 plan (:mod:`imdb_sentiment.inference.quantize`):
    without one, ``int8`` is refused and ``auto`` never picks it.
    """

    name = "torch"

    def __init__(
        self,
        module: PreTrainedModel,
        *,
        device: str | None = None,
        precision: str = "auto",
        int8_plan: dict[str, Any] | None = None,
        student: dict[str, Any] | None = None,
    ) -> None:
        """Move ``module`` to ``device`` (CUDA when available) in ``precision``, in eval mode.

        ``student``: the attached student's record when ``module`` is that student.
        """
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.precision = inference_precision(
            precision, self.device.type, int8_ready=int8_plan is not None
        )
        self.module = module
        self.student = student
        """The attached student's record when this is that student (:mod:`.cpu_student`)."""
        as_module: torch.nn.Module = module
        as_module.to(self.device)
        # bf16 weights and activations (not autocast): measured faster on AMX CPUs.
        as_module.to(torch.bfloat16 if self.precision in BF16_PRECISIONS else torch.float32)
        as_module.eval()
        # Same logits, less work: the last layer computes the position the head reads.
        self.first_token_only = read_first_token(as_module)
        self.forward = eager_forward(as_module)
        self.fused_linears = 0
        """Linear layers running with bias (and GELU) fused into oneDNN matmuls (:mod:`.fused`)."""
        if self.precision == "bf16" and self.device.type == "cpu":
            self.fused_linears = fuse_checked(as_module, BF16_MAX_ABS_DIFF)
        if self.precision == COMPILED:
            compiled = compile_bf16(as_module, BF16_MAX_ABS_DIFF)
            if compiled is None:  # compile_bf16 warned why
                self.precision = "bf16"
            else:
                self.forward = compiled
        if self.precision == "int8":
            if int8_plan is None:
                raise ModelError(
                    "--precision int8 needs the model's int8 plan "
                    "(imdb-sentiment export RUN --format torch-int8)"
                )
            quantize_linears(as_module, int8_plan["keep_fp32"])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits, ``float32`` on the CPU, whatever the device and precision."""
        import torch

        with torch.inference_mode():
            logits = self.forward(
                torch.from_numpy(input_ids).to(self.device),
                torch.from_numpy(attention_mask).to(self.device),
            )
            return np.asarray(logits.float().cpu().numpy(), dtype=np.float32)


def require_onnxruntime() -> Any:
    """The onnxruntime module; :class:`MissingExtraError` when the export extra is missing."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError("onnxruntime", "export") from None
    return onnxruntime


class OnnxModel:
    """An exported classifier run by onnxruntime: padded ids and mask in, logits out."""

    def __init__(self, path: str | Path, variant: str = "onnx", threads: int | None = None):
        """Open ``path`` as ``variant`` (``onnx`` or ``onnx-int8``) on the CPU."""
        if variant not in BACKENDS[1:]:
            raise ConfigError(f"an ONNX model is onnx or onnx-int8, got {variant!r}")
        ort = require_onnxruntime()
        self.path = Path(path)
        self.name = variant
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
            from imdb_sentiment.runs import run_of

            run = run_of(Path(model_dir))
            flag = " --quantize int8" if quantized else ""
            raise ModelError(
                f"no {name} in {path.parent}; create it with: "
                f"imdb-sentiment export {run} --format onnx{flag}"
            )
        return cls(path, "onnx-int8" if quantized else "onnx")

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits, ``float32``."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        logits = self.session.run(["logits"], feeds)[0]
        return np.asarray(logits, dtype=np.float32)


def _student(
    path: str | Path, precision: str, device: str | None
) -> tuple[Path, dict[str, Any]] | None:
    """The attached student to run instead of the model at ``path``, if any."""
    import torch

    from imdb_sentiment.modeling.loading import find_model_dir

    device_type = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")).type
    if not runs_student(precision, device_type):
        return None
    return attached_student(find_model_dir(path))


def load_backend(
    path: str | Path,
    backend: str = "torch",
    *,
    precision: str = "auto",
    device: str | None = None,
    cpu_student: bool = False,
) -> tuple[Runtime, PreTrainedTokenizerBase, InferenceSettings, Path]:
    """The runtime, tokenizer, inference settings and model folder of a run or model folder.

    Both values are checked before anything is read, so a bad flag fails fast and as a
    :class:`ConfigError` even when the path is wrong too. ``cpu_student`` (predict and serve):
    run the model's attached student instead where :func:`~imdb_sentiment.inference.cpu_student.
    runs_student` says so; the runtime's ``student`` then holds its record.
    """
    from imdb_sentiment.modeling.loading import (
        InferenceSettings,
        find_model_dir,
        load_tokenizer,
        load_trained,
    )

    check_precision(precision, check_backend(backend))
    if backend == "torch":
        student = _student(path, precision, device) if cpu_student else None
        module, tokenizer, settings, model_dir = load_trained(student[0] if student else path)
        # Explicit int8 without a passed plan is an error; auto just skips int8.
        plan = require_plan(model_dir) if precision == "int8" else read_plan(model_dir)
        # auto takes int8 only from a plan measured faster than fp32, checked on the int8
        # kernels this CPU runs (AVX2 and VNNI kernels were measured to round differently).
        if (
            precision == "auto"
            and plan is not None
            and not (
                plan.get("faster", False)
                and plan.get("checked_on", {}).get("int8_kernel") == int8_kernel()
            )
        ):
            plan = None
        runtime = TorchModel(
            module,
            device=device,
            precision=precision,
            int8_plan=plan,
            student=student[1] if student else None,
        )
        return runtime, tokenizer, settings, model_dir
    model_dir = find_model_dir(path)
    onnx = OnnxModel.load(model_dir, quantized=backend == "onnx-int8")
    return onnx, load_tokenizer(str(model_dir)), InferenceSettings.load(model_dir), model_dir
