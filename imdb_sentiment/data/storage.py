"""Where files go: checks that a destination can be written and has room, made before the
work starts; one-line reasons for the file-system failures that still happen; file modes that
follow the user's umask.

Every verb that writes (``download``, ``train``, ``eval``, ``predict --output``, ``export``)
checks its destination here first, so a read-only mount or a file in the way costs no model
load. What cannot be foreseen (a disk that fills mid-write) ends as an :class:`OSError` that
:func:`os_error_message` turns into one line at the CLI boundary.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from imdb_sentiment.atomic import current_umask
from imdb_sentiment.errors import StorageError

FILE_SYSTEM_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENOENT,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.EIO,
        errno.EFBIG,
        errno.EMLINK,
        errno.EXDEV,
    }
)
"""Error numbers that mean "this place on disk cannot be used", not a bug or a network fault."""

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a file is in the way where a folder should be",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
}
_HINTS = {
    errno.EACCES: "check its owner and mode, or choose a location you can write",
    errno.EPERM: "check its owner and mode, or choose a location you can write",
    errno.EROFS: "choose a writable location",
    errno.ENOSPC: "free some space or choose another disk; files already there were kept",
    errno.EDQUOT: "free some space or choose another disk; files already there were kept",
    errno.ENOTDIR: "move the file away or choose another location",
}


def os_error_message(exc: OSError) -> str:
    """One line for a file-system failure: which path, why, and what to do."""
    reason = _REASONS.get(exc.errno or -1) or _first_line(exc.strerror or str(exc)).lower()
    where = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    hint = _HINTS.get(exc.errno or -1)
    text = f"{where}: {reason}" if where else reason
    return f"{text}; {hint}" if hint else text


def is_file_system_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a place on disk cannot be used (and so is the user's to fix)."""
    return isinstance(exc, OSError) and (
        exc.errno in FILE_SYSTEM_ERRNOS
        or exc.filename is not None
        or "No space left on device" in str(exc)
    )


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0] if lines else "file-system error"


def _nearest_existing(path: Path) -> Path:
    current = path.absolute()
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    return current


def check_writable(folder: str | Path, *, hint: str = "choose a writable location") -> Path:
    """Raise :class:`StorageError` unless files can be created in ``folder``.

    ``folder`` may not exist yet: then its nearest existing ancestor must be a folder that can
    be written (it will be created there). The test is a real write of an empty file, so a
    read-only mount is caught even for root, for whom permission bits do not apply.
    """
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise StorageError(f"cannot write to {folder}: {existing} is a file, not a folder; {hint}")
    probe = existing / f".imdb-sentiment-write-test-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        reason = _REASONS.get(exc.errno or -1) or _first_line(exc.strerror or str(exc))
        where = folder if existing == folder.absolute() else f"{folder} (in {existing})"
        raise StorageError(f"cannot write to {where}: {reason}; {hint}") from None
    os.close(fd)
    probe.unlink(missing_ok=True)
    return existing


def free_bytes(folder: str | Path) -> int:
    """Free bytes on the disk that holds ``folder`` (or would hold it once created)."""
    return shutil.disk_usage(_nearest_existing(Path(folder))).free


def check_free_space(folder: str | Path, needed: int, what: str) -> None:
    """Raise :class:`StorageError` when the disk of ``folder`` has less than ``needed`` bytes."""
    free = free_bytes(folder)
    if free < needed:
        raise StorageError(
            f"not enough space for {what} in {folder}: about {_size(needed)} needed, "
            f"{_size(free)} free; free some space or choose another location"
        )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


def share_like_umask(folder: str | Path) -> None:
    """Give every file under ``folder`` the mode a new file gets under the user's umask.

    safetensors writes its weights 0600 whatever the umask, so a model trained by one user (or
    by a container) cannot be read by another that may read every other file beside it.
    """
    mask = current_umask()
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            executable = path.stat().st_mode & 0o111
            path.chmod((0o666 | executable) & ~mask)
