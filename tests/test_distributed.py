"""Data-parallel training in two real CPU processes (gloo), started the way users start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imdb_sentiment.training.distributed import (
    already_distributed,
    launch_command,
    wanted_processes,
)


def test_two_processes_both_train(tiny_model: Path, prepared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "imdb_sentiment", "train", "--model", str(tiny_model),
         "--data", str(prepared_data), "--output-dir", str(tmp_path), "--run-name", "ddp",
         "--max-length", "64", "--lr", "5e-3", "--batch-size", "8", "--epochs", "2",
         "--report-to", "none", "--num-processes", "2"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching 2 training processes" in proc.stderr

    run = tmp_path / "ddp"
    processes = json.loads((run / "processes.json").read_text())
    assert [p["rank"] for p in processes] == [0, 1]
    assert len({p["pid"] for p in processes}) == 2
    assert all(p["optimizer_steps"] > 0 for p in processes)
    # Each process saw half the data: together one pass per epoch, not two.
    train_rows = json.loads((run / "data_manifest.json").read_text())["used"]["train_rows"]
    seen = sum(p["samples_seen"] for p in processes)
    assert 2 * train_rows <= seen <= 2 * train_rows + 2 * 2 * 8

    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["world_size"] == 2
    assert metrics["accuracy"] > 0.8
    assert metrics["train_loss"] < 0.75  # not inflated by the number of processes
    assert (run / "model" / "model.safetensors").is_file()
    assert (tmp_path / "LATEST").read_text().strip() == "ddp"


def test_launch_command_really_starts_n_processes() -> None:
    cmd = launch_command(2, ["train", "--config", "c.yaml"])
    assert "--multi_gpu" in cmd and "--cpu" not in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    assert cmd[-5:] == ["-m", "imdb_sentiment", "train", "--config", "c.yaml"][-5:]


def test_process_count_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert wanted_processes(3) == 3
    assert wanted_processes(None) >= 1
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not already_distributed()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert already_distributed()


def test_resume_in_two_processes(tiny_model: Path, prepared_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        env.pop(var, None)
    base = [sys.executable, "-m", "imdb_sentiment", "train", "--model", str(tiny_model),
            "--data", str(prepared_data), "--output-dir", str(tmp_path), "--run-name", "ddp",
            "--max-length", "64", "--lr", "5e-3", "--batch-size", "8", "--report-to", "none",
            "--num-processes", "2"]
    first = subprocess.run([*base, "--epochs", "2"], capture_output=True, text=True, env=env,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run([*base, "--epochs", "3", "--resume"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]
    assert metrics["epochs_completed"] == pytest.approx(3.0) and metrics["world_size"] == 2
