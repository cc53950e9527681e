"""Unreadable model files: every command that loads a model says "permission denied", names
the file and the fix, in one line with ModelError's exit code (4), never "No such file".

Made real with permission bits: files owned by this user made mode 000 (a folder: 000 too),
read by another user when the tests run as root, whom permission bits do not stop.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fault_tools import as_other_user
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ModelError

runner = CliRunner()
CASES = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "model/",  # the whole model folder
    "run/",  # the run folder above it
]


@pytest.fixture(scope="module")
def shared_root(trained_run: Path) -> Iterator[Path]:
    """A copy of the run in a folder every user can enter (pytest's are 0700), with a review
    file and an output folder another user can read and write."""
    root = Path(tempfile.mkdtemp(prefix="imdb-perm-"))
    try:
        root.chmod(0o755)
        shutil.copytree(trained_run, root / "run", ignore=shutil.ignore_patterns("eval"))
        for p in [root / "run", *(root / "run").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        pd.DataFrame({"text": ["great film", "awful plot"] * 3, "label": [1, 0] * 3}).to_csv(
            root / "reviews.csv", index=False
        )
        (root / "reviews.csv").chmod(0o644)
        (root / "out").mkdir()
        (root / "out").chmod(0o777)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _commands(root: Path) -> dict[str, list[str]]:
    run = str(root / "run")
    return {
        "predict": ["predict", "--model", run, "a fine film"],
        "eval": [
            "eval",
            run,
            "--file",
            str(root / "reviews.csv"),
            "--output-dir",
            str(root / "out"),
        ],
        "serve": ["serve", run],
        "export": ["export", run, "--file", str(root / "reviews.csv")],
    }


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["predict", "eval", "serve", "export"])
def test_an_unreadable_model_file_is_one_line_naming_it_and_the_fix(
    shared_root: Path, command: str, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.serving import app as server

    def started(*_a: object, **_k: object) -> None:
        raise AssertionError("the server started on a model it cannot read")

    monkeypatch.setattr(server, "serve", started)
    run = shared_root / "run"
    target = {"run/": run, "model/": run / "model"}.get(case, run / "model" / case)
    target.chmod(0)
    try:
        with as_other_user():
            result = runner.invoke(app, _commands(shared_root)[command])
    finally:
        target.chmod(0o755 if target.is_dir() else 0o644)
    out = result.output.strip()
    assert "Traceback" not in out, out
    line = out[out.rindex("error:") :]
    assert "\n" not in line, out
    assert result.exit_code == ModelError.exit_code, out
    assert "permission denied" in line and str(target) in line, line
    assert "chmod a+r" in line and "No such file" not in line, line
