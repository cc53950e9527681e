"""What this machine's CPU computes natively, as PyTorch is allowed to use it.

Training and inference both choose bf16 on a CPU only where it is computed natively, so the
probe lives here, below both. It reads ``/proc/cpuinfo`` and the two variables that cap the
instruction sets PyTorch uses, without importing torch:

- ``ONEDNN_MAX_CPU_ISA`` (or its old name ``DNNL_MAX_CPU_ISA``) caps oneDNN, which runs the
  bf16 matrix products. Capped below ``AVX512_CORE_BF16`` it emulates bf16: measured on an AMX
  Xeon with torch 2.13, a bf16-autocast MLP step was 11x slower than fp32 under ``AVX2`` and 2x
  slower under ``AVX512_CORE`` (docs/TRAINING_SPEED.md). oneDNN reads the value without regard to
  case and ignores a name it does not know.
- ``FBGEMM_ENABLE_INSTRUCTIONS`` (``AVX2``, ``AVX512``, ``AVX512_E1`` = VNNI) caps FBGEMM, which
  runs PyTorch's dynamic int8 Linear layers; ``MKL_ENABLE_INSTRUCTIONS`` caps MKL's fp32 GEMMs.
  Neither changes what bf16 needs, but an AVX2-only CPU is emulated on a newer one only when all
  four caps are set (docs/INFERENCE.md). ONNX Runtime's MLAS reads none of them.
- ``ATEN_CPU_CAPABILITY`` caps PyTorch's own vectorised kernels (``default``, ``avx2``,
  ``avx512``; lower case only, anything else is ignored with a warning, as
  ``torch.backends.cpu.get_cpu_capability()`` shows). A user who pins it below ``avx512`` asked
  for code that runs the same on older CPUs, so bf16 is not chosen for them either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of bf16 matrix instructions: Intel AMX, AVX512-BF16 dot products."""

# oneDNN's ISA names, lowest first (oneDNN "CPU dispatcher control"; aliases share a rank).
_ONEDNN_ISAS: dict[str, int] = {
    "SSE41": 0,
    "AVX": 1,
    "AVX2": 2,
    "AVX2_VNNI": 3,
    "AVX2_VNNI_2": 4,
    "AVX512_CORE": 5,
    "AVX512_CORE_VNNI": 6,
    "AVX512_CORE_BF16": 7,
    "AVX512_CORE_FP16": 8,
    "AVX10_1_512": 8,
    "AVX512_CORE_AMX": 9,
    "AVX10_1_512_AMX": 9,
    "AVX512_CORE_AMX_FP16": 10,
    "AVX10_1_512_AMX_FP16": 10,
    "AVX10_2_512": 11,
    "AVX10_2_512_AMX_2": 12,
    "ALL": 99,
}
_AVX512_BF16_RANK = _ONEDNN_ISAS["AVX512_CORE_BF16"]
_AMX_RANK = _ONEDNN_ISAS["AVX512_CORE_AMX"]
_ATEN_BELOW_AVX512 = ("default", "avx2")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    """The first processor's ``name`` line in ``/proc/cpuinfo`` (None where unreadable)."""
    try:
        with cpuinfo.open(encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name, for the records a benchmark writes beside its figures."""
    import platform

    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The first processor's feature flags (empty where ``/proc/cpuinfo`` is unreadable)."""
    return frozenset((_cpuinfo_field("flags", cpuinfo) or "").split())


def _onednn_rank(env: Mapping[str, str]) -> int:
    """How far oneDNN may go, as a rank in ``_ONEDNN_ISAS`` (no cap: the top)."""
    value = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "ALL"
    return _ONEDNN_ISAS.get(value.strip().upper(), _ONEDNN_ISAS["ALL"])


def isa_restriction(env: Mapping[str, str] | None = None) -> str | None:
    """The variable that keeps PyTorch from native bf16 (``NAME=value``), or None."""
    env = os.environ if env is None else env
    if _onednn_rank(env) < _AVX512_BF16_RANK:
        name = "ONEDNN_MAX_CPU_ISA" if env.get("ONEDNN_MAX_CPU_ISA") else "DNNL_MAX_CPU_ISA"
        return f"{name}={env[name]}"
    if env.get("ATEN_CPU_CAPABILITY") in _ATEN_BELOW_AVX512:
        return f"ATEN_CPU_CAPABILITY={env['ATEN_CPU_CAPABILITY']}"
    return None


def cpu_bf16_unit(env: Mapping[str, str] | None = None, cpuinfo: Path = CPUINFO) -> str | None:
    """Which unit would compute bf16 here: ``amx``, ``avx512_bf16`` or None (emulated).

    Both the CPU's flags and the caps the environment puts on PyTorch count: a CPU with AMX
    under ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` computes bf16 on AVX512-BF16.
    """
    env = os.environ if env is None else env
    if isa_restriction(env) is not None:
        return None
    flags = cpu_flags(cpuinfo)
    if "amx_bf16" in flags and _onednn_rank(env) >= _AMX_RANK:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else None


def cpu_has_native_bf16(env: Mapping[str, str] | None = None, cpuinfo: Path = CPUINFO) -> bool:
    """True when PyTorch computes bf16 natively here (Intel AMX or AVX512-BF16, not capped)."""
    return cpu_bf16_unit(env, cpuinfo) is not None


_FBGEMM_VNNI = ("AVX512_E1", "AVX512_E1_256")


def int8_kernel(env: Mapping[str, str] | None = None, cpuinfo: Path = CPUINFO) -> str | None:
    """Which FBGEMM kernels run PyTorch's int8 Linear layers here: ``avx512_vnni``, ``avx512``,
    ``avx2`` or None (no AVX2: FBGEMM's slow reference code).

    FBGEMM has no AMX kernels. The kernels do not round alike (docs/INFERENCE.md), so an int8
    plan records the kernel it was checked on.
    """
    env = os.environ if env is None else env
    flags = cpu_flags(cpuinfo)
    if "avx2" not in flags:
        return None
    cap = env.get("FBGEMM_ENABLE_INSTRUCTIONS", "").strip().upper()
    if cap == "AVX2" or "avx512f" not in flags:
        return "avx2"
    if "avx512_vnni" in flags and (not cap or cap in _FBGEMM_VNNI):
        return "avx512_vnni"
    return "avx512"


def cpu_has_fast_int8(env: Mapping[str, str] | None = None, cpuinfo: Path = CPUINFO) -> bool:
    """True when PyTorch's dynamic int8 Linear layers have vectorised kernels here (AVX2 or up)."""
    return int8_kernel(env, cpuinfo) is not None
