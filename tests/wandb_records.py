"""Read what a W&B offline run recorded, straight from its ``.wandb`` file.

The file is a LevelDB-style log (7-byte W&B header, 32 KiB blocks, records split into
FULL/FIRST/MIDDLE/LAST chunks with a 7-byte chunk header) of ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32768
FILE_HEADER = 7
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> list[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file")
    out: list[bytes] = []
    pos = FILE_HEADER
    pending = b""
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - (pos % BLOCK)
        if left_in_block < CHUNK_HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == 0 and length == 0:
            break
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def read_run(run_file: Path) -> dict[str, Any]:
    """Config, history rows and summary of an offline run."""
    from wandb.proto import wandb_internal_pb2

    exited = False
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for payload in _payloads(run_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            exited = True
    return {"config": config, "history": history, "summary": summary, "exited": exited}


def read_finished_run(run_file: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Like :func:`read_run`, once the run's exit record is on disk.

    W&B's service process writes the file asynchronously, so the last records can land a
    moment after ``run.finish()`` has returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        recorded = read_run(run_file)
        if recorded["exited"] or time.monotonic() > deadline:
            return recorded
        time.sleep(0.2)
