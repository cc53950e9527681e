"""Data-parallel training: which process this is, and starting N of them through accelerate."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import TypeVar

from imdb_sentiment.errors import ImdbSentimentError, RunError
from imdb_sentiment.runs import default_run_name

T = TypeVar("T")


def world_size() -> int:
    """How many training processes take part (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the process that writes the run directory and reports (rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def agree(decide: Callable[[], T]) -> T:
    """Rank 0 runs ``decide`` (claiming a run directory, say); every process gets its answer.

    When rank 0 fails, every process raises: the others get the same one-line error instead of
    waiting forever at the next collective call.
    """
    if world_size() == 1:
        return decide()
    import torch.distributed as dist
    from accelerate import PartialState

    # Initialises the process group Trainer will reuse. Broadcast with torch directly: on CPU
    # accelerate reports no distributed type and its broadcast_object_list does nothing.
    PartialState()
    box: list[object] = [None]
    failure: BaseException | None = None
    if is_main_process():
        try:
            box = [("ok", decide())]
        except BaseException as exc:
            failure = exc
            known = isinstance(exc, ImdbSentimentError)
            box = [
                (
                    "error",
                    type(exc) if known else RunError,
                    str(exc) if known else f"the main process failed: {exc!r}",
                )
            ]
    dist.broadcast_object_list(box, src=0)
    if failure is not None:
        raise failure
    outcome = box[0]
    assert isinstance(outcome, tuple)
    if outcome[0] == "error":
        raise outcome[1](outcome[2])
    return outcome[1]


def agree_on_run_name(name: str | None, model_name: str) -> str:
    """Every process must write to the same run directory: rank 0 picks, the others follow."""
    if name is not None:
        return name
    return agree(lambda: default_run_name(model_name))


def already_distributed() -> bool:
    """True inside a process started by accelerate/torchrun (or any launcher that sets these)."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def wanted_processes(requested: int | None) -> int:
    """How many processes to train with: as asked, else one per visible GPU (at least one)."""
    if requested is not None:
        return requested
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(num_processes: int, cli_args: list[str]) -> list[str]:
    """The ``accelerate launch`` command line that re-runs ``imdb-sentiment`` in N processes.

    ``--multi_gpu`` is what makes accelerate start N real processes; on a machine without GPUs
    they fall back to the gloo backend on CPU (``--cpu`` would silently start only one).
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cmd = [
        # accelerate's launcher, ended by an exit code instead of a traceback (training/launch.py)
        sys.executable,
        "-m",
        "imdb_sentiment.training.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--machine_rank",
        "0",
        "--main_process_ip",
        "127.0.0.1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",  # precision is chosen by our own config
        "--dynamo_backend",
        "no",
    ]
    if gpus:
        cmd += ["--gpu_ids", ",".join(str(i) for i in range(min(gpus, num_processes)))]
    return [*cmd, "-m", "imdb_sentiment", *cli_args]


def relaunch(num_processes: int, cli_args: list[str]) -> int:
    """Run the CLI again under accelerate in ``num_processes`` processes; return its exit code."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return call_forwarding_signals(launch_command(num_processes, cli_args), env)


def call_forwarding_signals(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` and wait; SIGTERM and SIGINT sent to this process are passed on to it.

    ``docker stop`` and Kubernetes signal only the process they started: without this the
    training processes would be orphaned, and never told to record where they stopped.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return subprocess.call(cmd, env=env)  # signal handlers belong to the main thread
    child = subprocess.Popen(cmd, env=env)
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if forwarded and code != 0:
        return 128 + forwarded[0]  # as the shell reports a process that signal ended
    return code
