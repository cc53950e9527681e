"""Data-parallel training: which process this is, and starting N of them through accelerate."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from imdb_sentiment.runs import default_run_name


def world_size() -> int:
    """How many training processes take part (1 outside a distributed launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the process that writes the run directory and reports (rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def agree_on_run_name(name: str | None, model_name: str) -> str:
    """Every process must write to the same run directory: rank 0 picks, the others follow."""
    if name is not None:
        return name
    name = default_run_name(model_name)
    if world_size() > 1:
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        PartialState()  # initialises the process group Trainer will reuse
        box = [name]
        broadcast_object_list(box, from_process=0)
        name = box[0]
    return name


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
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes", str(num_processes),
        "--num_machines", "1",
        "--machine_rank", "0",
        "--main_process_ip", "127.0.0.1",
        "--main_process_port", str(free_port()),
        "--mixed_precision", "no",  # precision is chosen by our own config
        "--dynamo_backend", "no",
    ]
    if gpus:
        cmd += ["--gpu_ids", ",".join(str(i) for i in range(min(gpus, num_processes)))]
    return [*cmd, "-m", "imdb_sentiment", *cli_args]


def relaunch(num_processes: int, cli_args: list[str]) -> int:
    """Run the CLI again under accelerate in ``num_processes`` processes; return its exit code."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // num_processes)))
    return subprocess.call(launch_command(num_processes, cli_args), env=env)
