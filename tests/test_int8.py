"""PyTorch dynamic int8: the parity-gated plan, its use by predict, and the per-CPU auto choice."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imdb_sentiment import hardware
from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ConfigError, ModelError
from imdb_sentiment.export import torch_int8
from imdb_sentiment.export.formats import export_model
from imdb_sentiment.export.onnx import ExportOptions
from imdb_sentiment.export.parity import compare
from imdb_sentiment.inference.backends import inference_precision
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.inference.quantize import PLAN_FILE, read_plan

SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"})
SKYLAKE = frozenset({"avx2", "avx512f"})
HASWELL = frozenset({"avx2"})
NO_AVX2 = frozenset({"sse4_2"})
CAPS = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "FBGEMM_ENABLE_INSTRUCTIONS",
)
REVIEWS = [
    "A wonderful, moving film with a brilliant cast.",
    "Awful. Boring and painful.",
    "the plot was dull but the music was beautiful",
    "worst film " * 40,
]


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    return dst


@pytest.fixture(scope="module")
def int8_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = _copy(trained_run, tmp_path_factory.mktemp("int8") / "tiny")
    result = export_model(run, "torch-int8", ExportOptions(), log=lambda _m: None)
    assert result.files == [run / "model" / PLAN_FILE]
    return run


@pytest.fixture()
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in CAPS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_plan_passed_parity_and_predict_runs_int8(int8_run: Path) -> None:
    import torch

    plan = json.loads((int8_run / "model" / PLAN_FILE).read_text())
    assert plan["passed"] and plan["parity"]["passed"]
    assert plan["parity"]["agreement"] >= 0.995 and plan["parity"]["variant"] == "torch-int8"
    assert plan["linear_layers"] > 0 and len(plan["keep_fp32"]) <= plan["linear_layers"] // 2
    p8 = Predictor.from_path(int8_run, precision="int8")
    assert p8.precision == "int8"
    modules = list(p8.model.modules())  # type: ignore[union-attr]
    quantized = [m for m in modules if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    fp32 = [m for m in modules if type(m) is torch.nn.Linear]
    assert len(quantized) == plan["linear_layers"] - len(plan["keep_fp32"]) > 0
    assert len(fp32) == len(plan["keep_fp32"])
    p32 = Predictor.from_path(int8_run, precision="fp32")
    a, b = p8.predict_proba(REVIEWS)[:, 1], p32.predict_proba(REVIEWS)[:, 1]
    assert np.abs(a - b).max() < 0.05


def test_a_plan_that_misses_the_gate_is_refused_and_never_written(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _copy(trained_run, tmp_path / "tiny")
    # No accuracy drop can be below -1: every candidate fails the accuracy half of the gate.
    monkeypatch.setattr(torch_int8, "compare", functools.partial(compare, max_accuracy_drop=-1))
    with pytest.raises(ModelError, match="export refused: the torch-int8 "):
        export_model(run, "torch-int8", ExportOptions(), log=lambda _m: None)
    assert not (run / "model" / PLAN_FILE).exists()
    assert read_plan(run / "model") is None
    with pytest.raises(ModelError, match="--format torch-int8"):
        Predictor.from_path(run, precision="int8")


def test_a_plan_marked_failed_or_broken_is_ignored(tmp_path: Path) -> None:
    (tmp_path / PLAN_FILE).write_text(
        json.dumps({"format_version": 1, "passed": False, "keep_fp32": []})
    )
    assert read_plan(tmp_path) is None
    (tmp_path / PLAN_FILE).write_text("{not json")
    assert read_plan(tmp_path) is None


def test_the_gate_refuses_lost_accuracy_even_when_labels_mostly_agree() -> None:
    ref = np.array([[0.1, 0.9]] * 400 + [[0.9, 0.1]] * 600)
    cand = ref.copy()
    cand[:2] = [[0.9, 0.1]]  # 2 of 1,000 flipped: 99.8% agreement
    labels = np.array([1] * 400 + [0] * 600)
    close = compare(ref, cand, labels, variant="x", file="f", min_agreement=0.995)
    assert close.passed  # 0.2 points lost
    cand[:4] = [[0.9, 0.1]]  # 4 flipped: 99.6% agreement, but 0.4 points lost
    lost = compare(ref, cand, labels, variant="x", file="f", min_agreement=0.995)
    assert lost.agreement >= 0.995 and not lost.passed


@pytest.mark.parametrize(
    ("flags", "env", "with_plan", "expected"),
    [
        (SAPPHIRE_RAPIDS, {}, True, "bf16"),  # native bf16 stays the fast path
        (SKYLAKE, {}, True, "int8"),
        (HASWELL, {}, True, "int8"),
        (HASWELL, {}, False, "fp32"),  # no passed plan: never int8
        (NO_AVX2, {}, True, "fp32"),  # FBGEMM without AVX2 runs reference code
        # The AVX2 emulation on an AMX Xeon: bf16 is emulated, int8 is taken.
        (
            SAPPHIRE_RAPIDS,
            {
                "ONEDNN_MAX_CPU_ISA": "AVX2",
                "ATEN_CPU_CAPABILITY": "avx2",
                "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
            },
            True,
            "int8",
        ),
        (SAPPHIRE_RAPIDS, {"ATEN_CPU_CAPABILITY": "avx2"}, False, "fp32"),
    ],
)
def test_auto_picks_per_cpu(
    cpu_only: pytest.MonkeyPatch,
    flags: frozenset[str],
    env: dict[str, str],
    with_plan: bool,
    expected: str,
) -> None:
    cpu_only.setattr(hardware, "cpu_flags", lambda *_: flags)
    for name, value in env.items():
        cpu_only.setenv(name, value)
    assert inference_precision("auto", "cpu", int8_ready=with_plan) == expected
    assert inference_precision("fp32", "cpu", int8_ready=with_plan) == "fp32"


def test_auto_loads_int8_only_from_a_plan_measured_faster(
    cpu_only: pytest.MonkeyPatch, int8_run: Path, tmp_path: Path
) -> None:
    run = _copy(int8_run, tmp_path / "tiny")
    plan_file = run / "model" / PLAN_FILE
    plan = json.loads(plan_file.read_text())
    assert {"fp32_seconds", "int8_seconds", "faster"} <= set(plan)
    cpu_only.setattr(hardware, "cpu_flags", lambda *_: SKYLAKE)
    checked_here = {"cpu": "x", "int8_kernel": "avx512"}  # what SKYLAKE flags run
    plan_file.write_text(json.dumps({**plan, "faster": True, "checked_on": checked_here}))
    assert Predictor.from_path(run).precision == "int8"
    # Checked on other kernels (they round differently): auto does not trust it here.
    plan_file.write_text(
        json.dumps({**plan, "faster": True, "checked_on": {"int8_kernel": "avx2"}})
    )
    assert Predictor.from_path(run).precision == "fp32"
    # Passed parity but was slower than fp32 where it was checked: auto keeps fp32,
    # an explicit --precision int8 still gets it.
    plan_file.write_text(json.dumps({**plan, "faster": False}))
    assert Predictor.from_path(run).precision == "fp32"
    assert Predictor.from_path(run, precision="int8").precision == "int8"
    cpu_only.setattr(hardware, "cpu_flags", lambda *_: SAPPHIRE_RAPIDS)
    assert Predictor.from_path(run).precision == "bf16"


@pytest.mark.parametrize(
    ("flags", "env", "kernel"),
    [
        (SAPPHIRE_RAPIDS, {}, "avx512_vnni"),
        (SAPPHIRE_RAPIDS, {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}, "avx2"),
        (SAPPHIRE_RAPIDS, {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX512"}, "avx512"),
        (SKYLAKE, {}, "avx512"),
        (HASWELL, {}, "avx2"),
        (NO_AVX2, {}, None),
    ],
)
def test_int8_kernel_follows_flags_and_fbgemm_cap(
    monkeypatch: pytest.MonkeyPatch, flags: frozenset[str], env: dict[str, str], kernel: str | None
) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda *_: flags)
    assert hardware.int8_kernel(env) == kernel
    assert hardware.cpu_has_fast_int8(env) is (kernel is not None)


def test_int8_flag_errors(trained_run: Path) -> None:
    runner = CliRunner()
    onnx_int8 = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(trained_run),
            "--backend",
            "onnx",
            "--precision",
            "int8",
            "great",
        ],
    )
    assert onnx_int8.exit_code == ConfigError.exit_code, onnx_int8.output
    assert "torch backend only" in onnx_int8.output
    no_plan = runner.invoke(
        app, ["predict", "--model", str(trained_run), "--precision", "int8", "great"]
    )
    assert no_plan.exit_code == ModelError.exit_code, no_plan.output
    assert "--format torch-int8" in no_plan.output and "Traceback" not in no_plan.output
    bad = runner.invoke(app, ["export", str(trained_run), "--format", "torch-int4"])
    assert bad.exit_code == ConfigError.exit_code
    with pytest.raises(ConfigError, match="CPU only"):
        inference_precision("int8", "cuda", int8_ready=True)


def test_cli_export_and_predict_int8(trained_run: Path, tmp_path: Path) -> None:
    run = _copy(trained_run, tmp_path / "tiny")
    runner = CliRunner()
    out = runner.invoke(app, ["export", str(run), "--format", "torch-int8"])
    assert out.exit_code == 0, out.output
    assert (run / "model" / PLAN_FILE).is_file()
    pred = runner.invoke(
        app,
        ["predict", "--model", str(run), "--precision", "int8", "--json", "brilliant superb film"],
    )
    assert pred.exit_code == 0, pred.output
    assert json.loads(pred.stdout.splitlines()[0])["label"] in ("positive", "negative")
