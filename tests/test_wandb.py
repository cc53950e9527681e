from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_train_overrides
from wandb_records import read_finished_run

from imdb_sentiment.config import resolve
from imdb_sentiment.training.loop import train

pytest.importorskip("wandb")


@pytest.fixture
def no_wandb_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_NAME", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def test_offline_run_records_config_curves_final_metrics_and_confusion_matrix(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, no_wandb_login: None
) -> None:
    messages: list[str] = []
    overrides = {
        **tiny_train_overrides(tiny_model, prepared_data, tmp_path, "w"),
        "run.report_to": "wandb",
    }
    result = train(resolve(overrides=overrides), log=messages.append)

    assert any("logging offline" in m and "wandb sync" in m for m in messages)
    run_files = list((result.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    recorded = read_finished_run(run_files[0])
    assert recorded["exited"], "the offline run never recorded its exit"

    ours = recorded["config"]["imdb_sentiment"]
    assert ours["training"]["learning_rate"] == pytest.approx(5e-3)
    assert ours["model"]["name"] == str(tiny_model)

    evals = [row for row in recorded["history"] if "eval/accuracy" in row]
    assert len(evals) == 2  # one validation pass per epoch
    assert any("train/loss" in row for row in recorded["history"])

    summary = recorded["summary"]
    assert summary["final/accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert summary["final/n"] == result.metrics["n"]
    table = summary["final/confusion_matrix_table/path"]
    assert (run_files[0].parent / "files" / table).is_file()


def test_report_to_none_writes_nothing(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, no_wandb_login: None
) -> None:
    overrides = tiny_train_overrides(tiny_model, prepared_data, tmp_path, "n")
    result = train(resolve(overrides=overrides), log=lambda _m: None)
    assert not (result.run_dir / "wandb").exists()
