"""Faults around run directories and training processes (issue 11): checkpoints cut short,
``--overwrite`` that fails, SIGTERM, dead runs, the runs folder, colliding names, resuming a
finished run. Real files, processes and signals; tiny models from conftest."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, tiny_train_overrides, wait_for_checkpoint
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.config import resolve
from imdb_sentiment.errors import ConfigError, ModelError, RunError
from imdb_sentiment.runs import (
    LATEST_FILE,
    claim_new_run,
    claim_run_dir,
    mark_latest,
    read_status,
    resolve_run,
    runs_root,
    staging_dir,
    write_status,
)
from imdb_sentiment.runs.checkpoints import newest_complete_checkpoint
from imdb_sentiment.runs.status import effective_state, this_process
from imdb_sentiment.training.signals import Terminated, TrainingInterrupted

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny models train fastest on one thread, and the machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for var in (
        "LOCAL_RANK",
        "RANK",
        "WORLD_SIZE",
        "IMDB_SENTIMENT_RUNS",
        "IMDB_SENTIMENT_RUNS_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def small(tiny_model: Path, data: Path, runs: Path, name: str | None, **extra: Any) -> Any:
    """A run of 24 optimiser steps (checkpoints at 12 and 24) that learns enough to be kept."""
    overrides = {
        **tiny_train_overrides(tiny_model, data, runs, name or "x"),
        "run.name": name,
        "data.max_train_samples": 96,
        "data.max_eval_samples": 32,
        "training.learning_rate": 1e-2,
        **extra,
    }
    return resolve(overrides=overrides)


def quiet(_message: str) -> None:
    pass


@pytest.fixture
def never_at_chance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about records, not quality: a 24-step run on a randomly initialised
    tiny encoder is sometimes at chance, and would then (rightly) not be kept."""
    monkeypatch.setattr("imdb_sentiment.metrics.classification.at_chance", lambda _m: False)


# ------------------------------------------------------------------ 1. incomplete checkpoints


def fake_checkpoint(folder: Path, step: int) -> Path:
    """The files Trainer writes into a checkpoint, real formats, tiny contents."""
    import torch
    from safetensors.torch import save_file

    ckpt = folder / "checkpoints" / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    save_file({"w": torch.zeros(64, 64)}, str(ckpt / "model.safetensors"))
    torch.save({"state": {0: torch.zeros(64, 64)}}, ckpt / "optimizer.pt")
    torch.save({"last_epoch": step}, ckpt / "scheduler.pt")
    torch.save({"python": 1}, ckpt / "rng_state.pth")
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


BREAKAGES = {
    "killed before trainer_state.json": lambda c: (c / "trainer_state.json").unlink(),
    "trainer_state.json cut short": lambda c: truncate(c / "trainer_state.json"),
    "model.safetensors cut short": lambda c: truncate(c / "model.safetensors"),
    "model.safetensors missing": lambda c: (c / "model.safetensors").unlink(),
    "optimizer.pt cut short": lambda c: truncate(c / "optimizer.pt"),
    "scheduler.pt missing": lambda c: (c / "scheduler.pt").unlink(),
    "rng state cut short": lambda c: truncate(c / "rng_state.pth"),
    "rng state missing": lambda c: (c / "rng_state.pth").unlink(),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_resume_takes_the_newest_complete_checkpoint(tmp_path: Path, breakage: str) -> None:
    run = tmp_path / "r"
    fake_checkpoint(run, 10)
    broken = fake_checkpoint(run, 20)
    BREAKAGES[breakage](broken)
    write_status(run, "interrupted")

    best, skipped = newest_complete_checkpoint(run)
    assert best is not None and best.name == "checkpoint-10"
    assert [p.name for p, _why in skipped] == ["checkpoint-20"]

    claim = claim_run_dir(run, overwrite=False, resume=True, epochs=2)
    assert claim.checkpoint == run / "checkpoints" / "checkpoint-10"
    assert claim.skipped[0][1]  # says what was wrong
    # Set aside under a name Trainer's checkpoint-* never matches.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint-10",
        "incomplete-checkpoint-20",
    ]


def test_no_complete_checkpoint_says_how_to_start_again(tmp_path: Path) -> None:
    run = tmp_path / "r"
    truncate(fake_checkpoint(run, 10) / "optimizer.pt")
    write_status(run, "interrupted")
    with pytest.raises(
        RunError,
        match=r"no complete checkpoint; checkpoint-10: optimizer.pt is "
        r"truncated.*--overwrite",
    ):
        claim_run_dir(run, overwrite=False, resume=True)


# ------------------------------------------------- 2. --overwrite replaces only on success


def test_interrupted_overwrite_keeps_the_old_run_and_latest(
    tiny_model: Path,
    prepared_data: Path,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    from transformers import Trainer

    from imdb_sentiment.training.loop import train

    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "tiny")
    mark_latest(runs / "tiny")
    weights = (runs / "tiny" / "model" / "model.safetensors").read_bytes()

    def stopped(*_a: object, **_k: object) -> None:
        raise Terminated

    monkeypatch.setattr(Trainer, "train", stopped)
    cfg = small(tiny_model, prepared_data, runs, "tiny", **{"run.overwrite": True})
    with pytest.raises(
        TrainingInterrupted,
        match="stopped by SIGTERM; no complete checkpoint was saved; start again with",
    ) as caught:
        train(cfg, log=quiet)
    assert caught.value.exit_code == 143

    assert (runs / "tiny" / "model" / "model.safetensors").read_bytes() == weights
    assert read_status(runs / "tiny")["state"] == "succeeded"
    assert (runs / LATEST_FILE).read_text().strip() == "tiny"
    assert resolve_run(None, runs) == runs / "tiny"
    status = read_status(staging_dir(runs / "tiny"))
    assert status["state"] == "interrupted" and "--overwrite" in status["restart_with"]
    assert "resume_with" not in status  # there is nothing to resume from


def test_failed_overwrite_keeps_the_old_run(
    tiny_model: Path,
    prepared_data: Path,
    trained_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replacement at chance fails; the run it was to replace is untouched."""
    import shutil

    monkeypatch.setattr("imdb_sentiment.metrics.classification.at_chance", lambda _m: True)

    from imdb_sentiment.errors import TrainingFailedError
    from imdb_sentiment.training.loop import train

    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "tiny")
    weights = (runs / "tiny" / "model" / "model.safetensors").read_bytes()
    cfg = small(
        tiny_model, prepared_data, runs, "tiny", **{"run.overwrite": True, "training.epochs": 1}
    )
    with pytest.raises(TrainingFailedError):
        train(cfg, log=quiet)
    assert (runs / "tiny" / "model" / "model.safetensors").read_bytes() == weights
    assert read_status(runs / "tiny")["state"] == "succeeded"


# --------------------------------------------------------------------- 5. SIGTERM, dead runs


@pytest.mark.usefixtures("never_at_chance")
def test_sigterm_stops_training_cleanly_and_it_resumes(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    env = cli_env()
    proc = subprocess.Popen(
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
            str(runs),
            "--run-name",
            "sig",
            "--max-length",
            "64",
            "--lr",
            "1e-2",
            "--batch-size",
            "8",
            "--epochs",
            "40",
            "--max-train-samples",
            "96",
            "--max-eval-samples",
            "32",
            "--report-to",
            "none",
            "--num-processes",
            "1",
            "--set",
            "training.eval_steps=4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    run = runs / "sig"
    try:
        wait_for_checkpoint(proc, run, 180)
        running = read_status(run)
        assert running["state"] == "running" and running["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "{'loss'" not in out
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "error: training stopped by SIGTERM; resume with: imdb-sentiment "
        "train --resume --run-name sig"
    )
    status = read_status(run)
    assert status["state"] == "interrupted" and status["reason"] == "stopped by SIGTERM"

    # The suggested command works (shortened to one epoch, which the checkpoint is inside).
    command = status["resume_with"].split()[1:]
    result = runner.invoke(app, [*command, "--epochs", "1", "--num-processes", "1"])
    assert result.exit_code == 0, result.output
    assert read_status(run)["state"] == "succeeded"
    processes = json.loads((run / "processes.json").read_text())
    assert processes[0]["resumed_from_step"] > 0
    assert processes[0]["optimizer_steps"] == 12  # the whole run: both parts


def test_a_running_run_whose_process_died_is_reported_dead(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    run = tmp_path / "runs" / "r"
    fake_checkpoint(run, 10)
    (run / "model").mkdir()
    write_status(run, "running")
    status = {**read_status(run), "pid": int(gone.stdout)}
    (run / "status.json").write_text(json.dumps(status))
    assert effective_state(read_status(run)) == "dead"

    # Other verbs say so ...
    (run.parent / LATEST_FILE).write_text("r\n")
    import shutil

    shutil.rmtree(run / "model")
    with pytest.raises(ModelError, match=r"interrupted: its process \(pid \d+ on .*\) is gone"):
        resolve_run(None, run.parent)
    from imdb_sentiment.modeling.loading import find_model_dir

    with pytest.raises(ModelError, match=r"did not produce a model \(state: interrupted: its"):
        find_model_dir(run)
    # ... and resume takes it over.
    claim = claim_run_dir(run, overwrite=False, resume=True, epochs=2)
    assert claim.checkpoint is not None and claim.previous is not None


def test_a_live_run_is_neither_resumed_nor_overwritten(tmp_path: Path) -> None:
    run = tmp_path / "r"
    fake_checkpoint(run, 10)
    write_status(run, "running")  # this very process: alive
    assert read_status(run)["pid"] == this_process()["pid"]
    for kwargs in ({"resume": True, "overwrite": False}, {"resume": False, "overwrite": True}):
        with pytest.raises(RunError, match="is being trained right now"):
            claim_run_dir(run, **kwargs)


def test_the_launcher_passes_sigterm_on_to_the_training_processes(tmp_path: Path) -> None:
    """``docker stop`` signals only the process it started: the accelerate relaunch."""
    child = (
        "import signal, sys, time, pathlib\n"
        f"p = pathlib.Path({str(tmp_path / 'got')!r})\n"
        "signal.signal(signal.SIGTERM, lambda *a: (p.write_text('TERM'), sys.exit(143)))\n"
        f"pathlib.Path({str(tmp_path / 'ready')!r}).write_text('')\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import sys\n"
        "from imdb_sentiment.training.distributed import call_forwarding_signals\n"
        f"sys.exit(call_forwarding_signals([sys.executable, '-c', {child!r}]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert (tmp_path / "got").read_text() == "TERM"


# ------------------------------------------------------------------------ 7. the runs folder


def test_every_verb_reads_latest_from_the_same_runs_folder(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./runs here
    runs = trained_run.parent
    assert runs_root() == Path("runs")
    flag = runner.invoke(app, ["predict", "--runs-dir", str(runs), "--json", "superb film"])
    assert flag.exit_code == 0, flag.output
    monkeypatch.setenv("IMDB_SENTIMENT_RUNS_DIR", str(runs))
    assert resolve_run(None) == trained_run
    env = runner.invoke(app, ["predict", "--json", "superb film"])
    assert env.exit_code == 0, env.output
    assert json.loads(env.stdout)["label"] == json.loads(flag.stdout)["label"]
    # The flag wins over the environment.
    other = runner.invoke(app, ["predict", "--runs-dir", str(tmp_path / "none"), "x"])
    assert other.exit_code == 4 and "no trained run found in" in other.output


def test_train_writes_into_the_runs_folder_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.training.loop import TrainResult

    seen: list[Any] = []

    def fake(
        cfg: Any, *, resume: bool = False, log: Any = print, callbacks: list[Any] | None = None
    ) -> TrainResult:
        seen.append(cfg)
        return TrainResult(
            Path(cfg.run.output_dir) / "r",
            {**dict.fromkeys(("accuracy", "f1", "roc_auc", "log_loss"), 1.0), "n": 1},
            1,
        )

    monkeypatch.setattr("imdb_sentiment.training.loop.train", fake)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMDB_SENTIMENT_RUNS_DIR", "shared-runs")
    assert runner.invoke(app, ["train", "--num-processes", "1"]).exit_code == 0
    assert seen[-1].run.output_dir == "shared-runs"
    result = runner.invoke(app, ["train", "--num-processes", "1", "--output-dir", "elsewhere"])
    assert seen[-1].run.output_dir == "elsewhere"
    assert "--runs-dir elsewhere" in result.stderr  # says how the other verbs find it


# ---------------------------------------------------------------- 8. unique, atomic run names


def test_default_names_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imdb_sentiment import runs

    assert runs.default_run_name("m") != runs.default_run_name("m")  # same second
    names = iter(["m-1", "m-1", "m-2"])
    monkeypatch.setattr(runs, "default_run_name", lambda _m: next(names))
    assert claim_new_run(tmp_path, "m").run_dir.name == "m-1"
    assert claim_new_run(tmp_path, "m").run_dir.name == "m-2"  # m-1 was taken: another name


def test_two_trainings_claiming_one_folder_at_once_get_one_each(tmp_path: Path) -> None:
    for attempt in range(20):
        path = tmp_path / f"r{attempt}"
        start = threading.Barrier(4)
        outcomes: list[str] = []

        def claim(
            path: Path = path, start: threading.Barrier = start, outcomes: list[str] = outcomes
        ) -> None:
            start.wait()
            try:
                claim_run_dir(path, overwrite=False, resume=False)
                outcomes.append("won")
            except RunError:
                outcomes.append("refused")

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["refused"] * 3 + ["won"]


def test_latest_written_by_many_processes_at_once_is_always_whole(tmp_path: Path) -> None:
    writer = (
        "import sys; from pathlib import Path\n"
        "from imdb_sentiment.runs import mark_latest\n"
        f"for _ in range(300): mark_latest(Path({str(tmp_path)!r}) / sys.argv[1])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, f"run-{i}"]) for i in range(3)]
    seen = set()
    while any(p.poll() is None for p in procs):
        with contextlib.suppress(FileNotFoundError):
            seen.add((tmp_path / LATEST_FILE).read_text())
    assert all(p.returncode == 0 for p in procs)
    assert seen <= {f"run-{i}\n" for i in range(3)}
    assert [p.name for p in tmp_path.iterdir()] == [LATEST_FILE]  # no temp file left


# ----------------------------------------------------------- 10. resuming a finished run


@pytest.mark.usefixtures("never_at_chance")
def test_resuming_a_finished_run_changes_nothing(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from imdb_sentiment.training.loop import train

    runs = tmp_path / "runs"
    first = train(small(tiny_model, prepared_data, runs, "done"), log=quiet)
    assert "{'loss'" not in capsys.readouterr().out  # Trainer's log lines go to stderr
    files = {p: p.read_bytes() for p in (runs / "done").rglob("*") if p.is_file()}

    messages: list[str] = []
    result = train(small(tiny_model, prepared_data, runs, "done"), resume=True, log=messages.append)
    assert result.already_finished
    assert any("already finished" in m and "nothing was changed" in m for m in messages)
    assert result.metrics["accuracy"] == first.metrics["accuracy"]
    assert {p: p.read_bytes() for p in (runs / "done").rglob("*") if p.is_file()} == files

    cli = runner.invoke(
        app,
        [
            "train",
            "--resume",
            "--run-name",
            "done",
            "--output-dir",
            str(runs),
            "--num-processes",
            "1",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert "already finished" in cli.stderr and cli.stdout == ""


@pytest.mark.usefixtures("never_at_chance")
def test_a_resumed_run_records_the_whole_run(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    """Resumed past a checkpoint cut short: the records still cover every step."""
    from imdb_sentiment.training.loop import train

    runs = tmp_path / "runs"
    kept = {"training.keep_checkpoints": True}  # to resume it with a larger --epochs
    first = train(small(tiny_model, prepared_data, runs, "r", **kept), log=quiet)
    first_runtime = first.metrics["train_runtime_s"]
    last = runs / "r" / "checkpoints" / "checkpoint-24"
    truncate(last / "optimizer.pt")  # as a kill mid-save would leave it

    messages: list[str] = []
    result = train(
        small(tiny_model, prepared_data, runs, "r", **{"training.epochs": 3}),
        resume=True,
        log=messages.append,
    )
    assert any("skipping checkpoint-24: optimizer.pt is truncated" in m for m in messages)
    assert any("resuming from" in m and "checkpoint-12" in m for m in messages)
    saved = json.loads((runs / "r" / "processes.json").read_text())[0]
    assert saved["resumed_from_step"] == 12 and saved["optimizer_steps"] == 36
    assert saved["samples_seen"] == 36 * 8
    metrics = json.loads((runs / "r" / "metrics.json").read_text())["metrics"]
    assert metrics["train_loss"] > 0 and metrics["train_samples_per_second"] > 0
    assert metrics["train_runtime_s"] > 0.5 * first_runtime  # both parts, not 0
    assert metrics["epochs_completed"] == pytest.approx(3.0)
    assert result.processes[0]["optimizer_steps"] == 36


# ------------------------------------------------------------------------------- config


def test_an_invalid_set_value_is_an_error_even_when_a_flag_overrides_it() -> None:
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        resolve(overrides={"training.epochs": 2}, sets=["training.epochs=-1"])


def test_stopped_progress_bars_end_on_a_line_of_their_own() -> None:
    """A stop during validation: the nested evaluation bar clears its line and moves the cursor up
    as it closes; the training bar must close after it, so the error line starts clean."""
    import io

    from tqdm.auto import tqdm

    from imdb_sentiment.training.callbacks import close_progress_bars

    out = io.StringIO()
    training = tqdm(total=10, file=out)
    training.update(3)
    evaluating = tqdm(total=5, file=out, leave=False, position=1)
    evaluating.update(2)
    close_progress_bars()
    assert out.getvalue().endswith("\n")
    assert not out.getvalue().rstrip("\n").endswith("\x1b[A")
