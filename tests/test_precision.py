"""``auto`` precision on a CPU: bf16 only where PyTorch computes it natively, for training and
inference alike, from /proc/cpuinfo and the variables that cap PyTorch's instruction sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from imdb_sentiment import hardware
from imdb_sentiment.hardware import cpu_bf16_unit, cpu_flags, isa_restriction

SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
COOPER_LAKE = frozenset({"avx2", "avx512f", "avx512_bf16"})
SKYLAKE = frozenset({"avx2", "avx512f"})
CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def test_cpu_flags_read_the_flags_line(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert cpu_bf16_unit({}, info) == "amx"


@pytest.mark.parametrize(
    ("flags", "env", "unit"),
    [
        (SAPPHIRE_RAPIDS, {}, "amx"),
        (COOPER_LAKE, {}, "avx512_bf16"),
        (SKYLAKE, {}, None),
        (frozenset(), {}, None),
        # oneDNN capped below bf16: emulated (measured 11x slower under AVX2, 2x under AVX512_CORE)
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, None),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, None),
        (SAPPHIRE_RAPIDS, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, None),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "avx512_bf16"),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "amx"),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "all"}, "amx"),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "no-such-isa"}, "amx"),  # oneDNN ignores it
        # PyTorch's own kernels pinned below AVX-512
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "avx2"}, None),
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "default"}, None),
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "avx512"}, "amx"),
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "AVX2"}, "amx"),  # torch ignores upper case
    ],
)
def test_the_bf16_unit_follows_the_cpu_and_the_caps(
    flags: frozenset[str], env: dict[str, str], unit: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda *_: flags)
    assert cpu_bf16_unit(env) == unit
    assert hardware.cpu_has_native_bf16(env) is (unit is not None)


def test_a_cap_is_named() -> None:
    assert isa_restriction({"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert isa_restriction({"DNNL_MAX_CPU_ISA": "SSE41"}) == "DNNL_MAX_CPU_ISA=SSE41"
    assert isa_restriction({"ATEN_CPU_CAPABILITY": "avx2"}) == "ATEN_CPU_CAPABILITY=avx2"
    assert isa_restriction({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}) is None


@pytest.fixture()
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No GPU and no caps in the environment; each test sets the CPU's flags."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in CAPS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("flags", "env", "training", "inference"),
    [
        (SAPPHIRE_RAPIDS, {}, "bf16", "bf16"),
        # AVX512-BF16 without AMX: bf16 autocast steps measured slower than fp32, so training
        # keeps fp32; inference (bf16 weights, no autocast casts) keeps its own rule.
        (COOPER_LAKE, {}, "fp32", "bf16"),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "fp32", "bf16"),
        (SAPPHIRE_RAPIDS, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "fp32", "fp32"),
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "avx2"}, "fp32", "fp32"),
        (SKYLAKE, {}, "fp32", "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_native(
    cpu_only: pytest.MonkeyPatch,
    flags: frozenset[str],
    env: dict[str, str],
    training: str,
    inference: str,
) -> None:
    from imdb_sentiment.inference.backends import inference_precision
    from imdb_sentiment.training.arguments import training_precision

    cpu_only.setattr(hardware, "cpu_flags", lambda *_: flags)
    for name, value in env.items():
        cpu_only.setenv(name, value)
    assert training_precision("auto") == training
    assert inference_precision("auto", "cpu") == inference
    # An explicit choice is always kept.
    assert training_precision("fp32") == "fp32"
    assert training_precision("bf16") == "bf16"
    assert inference_precision("fp32", "cpu") == "fp32"


def test_auto_on_an_amx_cpu_trains_with_bf16_autocast(
    cpu_only: pytest.MonkeyPatch, tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    from imdb_sentiment.config import resolve
    from imdb_sentiment.training.arguments import training_arguments

    cfg = resolve(overrides={"model.name": str(tiny_model), "data.dir": str(prepared_data)})
    cpu_only.setattr(hardware, "cpu_flags", lambda *_: SAPPHIRE_RAPIDS)
    args = training_arguments(cfg, tmp_path / "run", "none", train_rows=100)
    assert (args.bf16, args.fp16, args.use_cpu) == (True, False, True)
    cpu_only.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    args = training_arguments(cfg, tmp_path / "run", "none", train_rows=100)
    assert (args.bf16, args.fp16) == (False, False)


def test_cpu_name_reads_the_model_name(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.00GHz\nflags\t\t: sse avx2\n")
    assert hardware.cpu_name(info) == "Example CPU @ 2.00GHz"
    assert cpu_flags(info) == frozenset({"sse", "avx2"})
    assert hardware.cpu_name(tmp_path / "missing")  # falls back to the platform's name
