"""Making a fault real on this machine: a read-only folder, a full disk, another user.

Shared by ``scripts/fault_injection.py`` and the fault tests (``tests/conftest.py`` puts
``scripts/`` on the import path), so the record in ``docs/FAULTS.md`` and the tests make each
fault the same way. Root ignores permission bits: a read-only folder is then a read-only bind
mount and an unreadable file needs another effective uid. Where the machine cannot make a fault,
the helper raises :class:`Unavailable` with the reason; the script records it as skipped and the
tests skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

IS_ROOT = os.geteuid() == 0
NOBODY = 65534
"""The uid root switches to, so that permission bits bite."""


class Unavailable(Exception):
    """This machine cannot make the fault."""


def mount(*args: str) -> bool:
    """Run ``mount`` with ``args``; whether it worked (False where there is no ``mount``)."""
    if shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """``folder`` (and everything under it) read-only, then as before; yields how."""
    if not IS_ROOT:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            yield "chmod a-w"
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if not mount("--bind", str(folder), str(folder)):
        raise Unavailable(
            "running as root and cannot bind-mount: no way to make a read-only folder"
        )
    try:
        if not mount("-o", "remount,bind,ro", str(folder)):
            raise Unavailable("running as root and cannot remount read-only")
        yield "read-only bind mount"
    finally:
        _unmount(folder)


@contextlib.contextmanager
def tiny_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount``'s syntax, e.g. ``256k``) on ``folder``, removed after."""
    folder.mkdir(parents=True, exist_ok=True)
    if not IS_ROOT:
        raise Unavailable("a full disk needs a tmpfs mount, which needs root")
    if not mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
        raise Unavailable("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        _unmount(folder)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its disk is full."""
    # Unbuffered: a buffered file would fail once more on close, with what it still held.
    with (folder / "filler").open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


@contextlib.contextmanager
def as_other_user() -> Iterator[None]:
    """The body runs as a user other than the files' owner (root: another effective uid).

    For root the files must be readable only by their owner (0600) and every folder above them
    enterable by others (pytest's own temporary folders are 0700).
    """
    if not IS_ROOT:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
