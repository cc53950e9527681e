"""The shared figure setup: headless matplotlib and whole PNG files for both reports."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import imdb_sentiment
from imdb_sentiment import plotting
from imdb_sentiment.evaluation import plots as eval_plots
from imdb_sentiment.monitoring import plots as drift_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_both_reports_draw_through_the_one_plotting_module() -> None:
    for module in (eval_plots, drift_plots):
        assert module.pyplot is plotting.pyplot
        assert module.save_png is plotting.save_png
    # No second copy of the backend setup or of the PNG write anywhere in the package.
    package = Path(imdb_sentiment.__file__).parent
    for path in package.rglob("*.py"):
        if path.name == "plotting.py":
            continue
        calls = {
            ast.unparse(node.func)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert "matplotlib.use" not in calls, path
        assert not any(call.endswith(".savefig") for call in calls), path


class _BrokenFigure:
    closed = False

    def tight_layout(self) -> None:
        pass

    def savefig(self, buffer: Any, **_: Any) -> None:
        buffer.write(b"half a png")
        raise OSError("disk full")


class _Plt:
    def __init__(self) -> None:
        self.closed: list[Any] = []

    def close(self, fig: Any) -> None:
        self.closed.append(fig)


def test_a_failed_figure_leaves_the_previous_png_whole(tmp_path: Path) -> None:
    target = tmp_path / "reliability.png"
    target.write_bytes(b"previous figure")
    plt, fig = _Plt(), _BrokenFigure()
    with pytest.raises(OSError, match="disk full"):
        plotting.save_png(plt, fig, target)
    assert target.read_bytes() == b"previous figure"
    assert [p.name for p in tmp_path.iterdir()] == ["reliability.png"]
    assert plt.closed == [fig]  # the figure's memory is freed even when the write fails


def test_evaluation_figures_are_whole_pngs_written_by_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    original = Path.replace

    def replace(self: Path, target: Any) -> Any:
        renamed.append(Path(target).name)
        return original(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    by_length = [
        {"slice": "short", "n": 4, "accuracy": 0.75, "accuracy_low": 0.3, "accuracy_high": 0.95}
    ]
    paths = eval_plots.make_plots(
        tmp_path, np.array([0, 1, 1, 0]), np.array([0.2, 0.8, 0.4, 0.1]), None, by_length, "t"
    )
    assert sorted(renamed) == sorted(p.name for p in paths)
    for path in paths:
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
