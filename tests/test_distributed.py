"""Data-parallel training in two real CPU processes (gloo), started the way users start it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env, wait_for_checkpoint

from imdb_sentiment.training.distributed import (
    already_distributed,
    launch_command,
    wanted_processes,
)


def test_two_processes_both_train(tiny_model: Path, prepared_data: Path, tmp_path: Path) -> None:
    env = cli_env()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imdb_sentiment",
            "train",
            "--model",
            str(tiny_model),
            "--data",
            str(prepared_data),
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "ddp",
            "--max-length",
            "64",
            "--lr",
            "5e-3",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--report-to",
            "none",
            "--num-processes",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
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


@pytest.mark.slow
def test_sigterm_to_the_launcher_of_an_overwrite_and_resume_in_two_processes(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    """``docker stop`` of a two-process ``--overwrite``: 143, the old run and LATEST kept, the
    new one interrupted with a checkpoint; ``--resume`` in two processes then finishes it (the
    suite's test of resuming under several processes) and replaces the old run."""
    from imdb_sentiment.runs import read_status, staging_dir, write_status
    from imdb_sentiment.runs.checkpoints import checkpoint_step, newest_complete_checkpoint

    env = cli_env()
    old = tmp_path / "ddp"
    (old / "model").mkdir(parents=True)
    (old / "model" / "model.safetensors").write_bytes(b"the old model")
    write_status(old, "succeeded")
    (tmp_path / "LATEST").write_text("ddp\n")
    # 320 reviews, 2 processes of 8: 20 optimiser steps an epoch, a checkpoint every 2.
    base = [
        sys.executable,
        "-m",
        "imdb_sentiment",
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared_data),
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "ddp",
        "--max-length",
        "64",
        "--lr",
        "5e-3",
        "--batch-size",
        "8",
        "--report-to",
        "none",
        "--num-processes",
        "2",
        "--set",
        "training.eval_steps=2",
        "--set",
        "training.early_stopping_patience=0",
    ]
    proc = subprocess.Popen(
        [*base, "--epochs", "40", "--overwrite"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    staged = staging_dir(old)
    try:
        wait_for_checkpoint(proc, staged, 240)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "error: training stopped by SIGTERM; resume with:" in err
    status = read_status(staged)
    assert status is not None and status["state"] == "interrupted", status
    assert (old / "model" / "model.safetensors").read_bytes() == b"the old model"
    assert read_status(old)["state"] == "succeeded"
    assert (tmp_path / "LATEST").read_text() == "ddp\n"

    ckpt = newest_complete_checkpoint(staged)[0]
    assert ckpt is not None
    # One epoch more than the checkpoint's: enough to learn, so the model is kept.
    epochs = (checkpoint_step(ckpt) or 0) // 20 + 2
    again = subprocess.run(
        [*base, "--epochs", str(epochs), "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr
    assert read_status(old)["state"] == "succeeded" and not staged.exists()
    assert (old / "model" / "model.safetensors").read_bytes() != b"the old model"
    processes = json.loads((old / "processes.json").read_text())
    assert [p["rank"] for p in processes] == [0, 1]
    assert all(p["resumed_from_step"] == checkpoint_step(ckpt) for p in processes)
    assert all(p["optimizer_steps"] == 20 * epochs for p in processes)
    metrics = json.loads((old / "metrics.json").read_text())["metrics"]
    assert metrics["epochs_completed"] == pytest.approx(epochs) and metrics["world_size"] == 2


@pytest.mark.parametrize(
    ("raised", "code"), [("signal", 143), ("child exit 8", 8), ("child killed", 137), ("done", 0)]
)
def test_the_launcher_ends_with_an_exit_code_not_a_traceback(
    raised: str, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from imdb_sentiment.training import launch

    def fake_launch(_args: object) -> None:
        if raised == "signal":
            raise SignalException("got signal: 15", sigval=signal.SIGTERM)
        if raised.startswith("child"):
            exitcode = 8 if raised == "child exit 8" else -signal.SIGKILL
            raise ChildFailedError(
                "imdb_sentiment",
                {0: ProcessFailure(local_rank=0, pid=1, exitcode=exitcode, error_file="")},
            )

    monkeypatch.setattr("accelerate.commands.launch.launch_command", fake_launch)
    assert launch.main(["--multi_gpu", "--num_processes", "2", "-m", "imdb_sentiment"]) == code
