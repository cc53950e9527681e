"""Which Trainer checkpoints can be resumed from.

A checkpoint folder is written file by file; a process killed mid-save, or a disk that fills,
leaves one that lacks files or holds truncated ones. Trainer would take the highest-numbered
folder anyway and fail deep inside loading, so every file it reads is checked first, cheaply:
JSON parses, safetensors headers agree with the file size, and ``torch.save`` archives (zip
files) have their central directory, which is written last.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"
SET_ASIDE_PREFIX = "incomplete-"
"""Broken checkpoints are renamed with this prefix: Trainer's ``checkpoint-*`` glob skips them."""


def checkpoint_step(path: Path) -> int | None:
    """The step in ``checkpoint-<step>``, or None for any other name."""
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    tail = name[len(CHECKPOINT_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > size - 8:
                return f"{path.name} is truncated"
            header = json.loads(fh.read(header_len))
    except (struct.error, ValueError, UnicodeDecodeError):
        return f"{path.name} is truncated or corrupt"
    ends = [
        t["data_offsets"][1]
        for k, t in header.items()
        if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t
    ]
    if 8 + header_len + max(ends, default=0) > size:
        return f"{path.name} is truncated"
    return None


def _torch_file_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            if not archive.namelist():
                return f"{path.name} is empty"
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{path.name} is truncated or corrupt"
    return None


def _weights_problem(ckpt: Path) -> str | None:
    single = ckpt / "model.safetensors"
    if single.is_file():
        return _safetensors_problem(single)
    index = ckpt / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError, TypeError):
            return f"{index.name} is truncated or corrupt"
        for shard in sorted(shards):
            problem = (
                _safetensors_problem(ckpt / shard)
                if (ckpt / shard).is_file()
                else f"{shard} is missing"
            )
            if problem:
                return problem
        return None
    if (ckpt / "pytorch_model.bin").is_file():
        return _torch_file_problem(ckpt / "pytorch_model.bin")
    return "the model weights are missing"


def _state_problem(ckpt: Path) -> str | None:
    state = ckpt / "trainer_state.json"
    if not state.is_file():
        return "trainer_state.json is missing"
    try:
        step = json.loads(state.read_text(encoding="utf-8"))["global_step"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "trainer_state.json is truncated or corrupt"
    return None if isinstance(step, int) else "trainer_state.json has no global_step"


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why Trainer could not resume from ``ckpt``, or None when every file it reads is whole."""
    problem = _state_problem(ckpt) or _weights_problem(ckpt)
    if problem:
        return problem
    for name in ("optimizer.pt", "scheduler.pt"):
        if not (ckpt / name).is_file():
            return f"{name} is missing"
    rng = sorted(ckpt.glob("rng_state*.pth"))
    if not rng:
        return "the random-number state (rng_state*.pth) is missing"
    torch_files = [ckpt / "optimizer.pt", ckpt / "scheduler.pt", *rng]
    if (ckpt / "scaler.pt").is_file():
        torch_files.append(ckpt / "scaler.pt")
    for path in torch_files:
        problem = _torch_file_problem(path)
        if problem:
            return problem
    return None


def newest_complete_checkpoint(run_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that can be resumed from, and the newer ones skipped (with why)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return None, []
    found = [
        (step, p) for p in root.iterdir() if p.is_dir() and (step := checkpoint_step(p)) is not None
    ]
    skipped: list[tuple[Path, str]] = []
    for _step, ckpt in sorted(found, reverse=True):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt, skipped
        skipped.append((ckpt, problem))
    return None, skipped


def set_aside(ckpt: Path) -> Path:
    """Rename a broken checkpoint so Trainer never takes it (nor rotates it as a real one)."""
    target = ckpt.with_name(SET_ASIDE_PREFIX + ckpt.name)
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"{SET_ASIDE_PREFIX}{n}-{ckpt.name}")
    ckpt.rename(target)
    return target


def checkpoint_global_step(ckpt: Path) -> int:
    """The optimiser steps a (complete) checkpoint had taken."""
    return int(json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
