"""``imdb-sentiment drift``: the reference profile and the drift tests, on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from tests.conftest import synthetic_frame

runner = CliRunner()


@pytest.fixture(scope="module")
def drift_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared run with a reference built (the shared run stays untouched)."""
    run = tmp_path_factory.mktemp("drift") / "run"
    shutil.copytree(trained_run, run)
    result = runner.invoke(app, ["drift", str(run), "--build-reference"])
    assert result.exit_code == 0, result.output
    return run


def _write_texts(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_reference_is_small_and_versioned(drift_run: Path) -> None:
    folder = drift_run / "reference"
    payload = json.loads((folder / "reference.json").read_text())
    assert payload["schema_version"] == 1
    n = payload["n_reviews"]
    assert n > 0 and len(payload["reviews"]["n_tokens"]) == n
    embeddings = np.load(folder / "embeddings.npy")
    assert embeddings.dtype == np.float16 and embeddings.shape == (n, 32)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5_000_000


def test_same_distribution_batch_does_not_drift(drift_run: Path, tmp_path: Path) -> None:
    texts = synthetic_frame(200, seed=11)["text"].tolist()
    batch = _write_texts(tmp_path / "same.txt", texts)
    result = runner.invoke(
        app,
        [
            "drift",
            str(drift_run),
            "--file",
            str(batch),
            "--json",
            "--output",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["drifted"] is False
    names = {s["name"] for s in report["signals"]}
    assert names == {
        "token_length",
        "truncated_share",
        "unknown_token_rate",
        "predicted_positive_rate",
        "confidence",
        "embedding",
        "vocabulary",
    }
    for s in report["signals"]:
        assert set(s) == {
            "name",
            "test",
            "statistic",
            "p_value",
            "threshold",
            "drifted",
            "reference",
            "batch",
        }
    assert json.loads((tmp_path / "out" / "drift.json").read_text()) == report
    assert "no drift" in (tmp_path / "out" / "report.md").read_text()
    _assert_plots_linked(tmp_path / "out")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_plots_linked(out: Path) -> None:
    """Every plot is a whole PNG beside report.md, and report.md links each one relatively."""
    import re

    from imdb_sentiment.monitoring.plots import CAPTIONS

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(CAPTIONS)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    links = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", (out / "report.md").read_text())
    assert sorted(links) == pngs
    for link in links:
        target = (out / link).resolve()
        assert target.parent == out.resolve() and target.is_file()
        data = target.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_one_word_texts_drift(drift_run: Path, tmp_path: Path) -> None:
    batch = _write_texts(tmp_path / "short.txt", ["film"] * 60)
    result = runner.invoke(
        app, ["drift", str(drift_run), "--file", str(batch), "--output", str(tmp_path / "out")]
    )
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    drifted = {s["name"] for s in report["signals"] if s["drifted"]}
    assert {"token_length", "embedding", "vocabulary"} <= drifted
    # p-values that underflow to 0 still draw, at the floor of the log axis.
    assert "with 4 plots" in result.output
    _assert_plots_linked(tmp_path / "out")
    # A second report into the same folder would overwrite the first: refused.
    again = runner.invoke(
        app, ["drift", str(drift_run), "--file", str(batch), "--output", str(tmp_path / "out")]
    )
    assert again.exit_code == 5 and "already holds" in again.output


@pytest.mark.parametrize("how", ["--no-plots", "no matplotlib"])
def test_report_without_plots(
    drift_run: Path, tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.errors import MissingExtraError
    from imdb_sentiment.monitoring import drift as drift_mod

    def missing(*_args: object) -> list[Path]:
        raise MissingExtraError("matplotlib", "plots")

    args = ["--no-plots"] if how == "--no-plots" else []
    if how == "no matplotlib":
        monkeypatch.setattr(drift_mod, "drift_plots", missing)
    batch = _write_texts(tmp_path / "b.txt", synthetic_frame(60, seed=5)["text"].tolist())
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["drift", str(drift_run), "--file", str(batch), *args, "--output", str(out)]
    )
    assert result.exit_code in (0, 1), result.output
    assert not list(out.glob("*.png")) and "![" not in (out / "report.md").read_text()
    assert (out / "drift.json").is_file()
    assert ("imdb-sentiment[plots]" in result.output) == (how == "no matplotlib")


def test_run_without_reference_names_build_reference(trained_run: Path, tmp_path: Path) -> None:
    batch = _write_texts(tmp_path / "b.txt", ["a fine film"] * 40)
    result = runner.invoke(
        app, ["drift", str(trained_run), "--file", str(batch), "--output", str(tmp_path / "out")]
    )
    assert result.exit_code == 5
    assert "--build-reference" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "args", "code", "needle"),
    [
        ("", [], 3, "holds no reviews"),
        ("a fine film\n" * 5, [], 3, "at least 30"),
        (None, ["--text-column", "review"], 3, "no column 'review'"),
        ("a fine film\n" * 40, ["--alpha", "1.5"], 2, "--alpha"),
    ],
)
def test_bad_input_is_one_line_and_not_exit_1(
    drift_run: Path, tmp_path: Path, content: str | None, args: list[str], code: int, needle: str
) -> None:
    if content is None:
        batch = tmp_path / "b.csv"
        batch.write_text("text\nfine\n", encoding="utf-8")
    else:
        batch = tmp_path / "b.txt"
        batch.write_text(content, encoding="utf-8")
    result = runner.invoke(
        app,
        ["drift", str(drift_run), "--file", str(batch), *args, "--output", str(tmp_path / "out")],
    )
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_no_action_is_a_config_error(drift_run: Path) -> None:
    result = runner.invoke(app, ["drift", str(drift_run)])
    assert result.exit_code == 2 and "--build-reference" in result.output


def test_window_is_bounded_and_reports_off_the_request_path(drift_run: Path) -> None:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.reference import load_reference
    from imdb_sentiment.monitoring.window import DriftWindow

    window = DriftWindow(
        Predictor.from_path(drift_run, precision="fp32"),
        load_reference(drift_run),
        size=50,
        refresh_s=3600,
    )
    window.add(["film"] * 10)
    assert window.refresh() is None and window.gauges() == {}  # too few texts yet
    window.add(["film"] * 10_000)
    assert len(window) == 50
    report = window.refresh()
    assert report is not None and report["drifted"] is True
    gauges = window.gauges()
    assert gauges["drifted"] == 1.0 and gauges["token_length.drifted"] == 1.0
    window.start()
    window.stop()


@pytest.mark.parametrize(
    ("damage", "code", "needle"),
    [
        ("missing file", 3, "no such file"),
        ("damaged reference", 5, "is damaged; rebuild it"),
        ("old schema", 5, "rebuild it with --build-reference"),
        ("not a run", 5, "not a run directory"),
        ("tiny reference size", 2, "--reference-size"),
    ],
)
def test_bad_run_or_reference_is_one_line_and_not_exit_1(
    drift_run: Path, tmp_path: Path, damage: str, code: int, needle: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(drift_run, run)
    batch = _write_texts(tmp_path / "b.txt", ["a fine film"] * 40)
    args = ["drift", str(run), "--file", str(batch), "--output", str(tmp_path / "out")]
    reference = run / "reference" / "reference.json"
    if damage == "missing file":
        args[3] = str(tmp_path / "nowhere.txt")
    elif damage == "damaged reference":
        reference.write_text("{not json", encoding="utf-8")
    elif damage == "old schema":
        reference.write_text(
            json.dumps({**json.loads(reference.read_text()), "schema_version": 0}), encoding="utf-8"
        )
    elif damage == "not a run":
        args[1] = str(tmp_path)
    else:
        args += ["--reference-size", "10"]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def _drift_eval() -> object:
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "drift_eval.py"
    spec = importlib.util.spec_from_file_location("drift_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_other_domain_text_is_read_from_a_dpkg_status_file_or_the_users_file(
    tmp_path: Path,
) -> None:
    script: Any = _drift_eval()
    status = tmp_path / "status"
    status.write_text(
        "Package: a\nStatus: install ok installed\nDescription: first tool\n"
        " It does one thing.\n .\n And another.\nHomepage: x\n\n"
        "Package: b\nDescription: second tool\n\n"
        "Package: c\nDescription: first tool\n It does one thing.\n .\n And another.\n",
        encoding="utf-8",
    )
    assert script.package_descriptions(status) == [
        "first tool. It does one thing. And another.",
        "second tool.",
    ]
    own = _write_texts(tmp_path / "own.txt", ["a recipe for bread", "a weather report"])
    texts, source = script.other_domain_texts(own, "text")
    assert texts == ["a recipe for bread", "a weather report"] and source == str(own)
