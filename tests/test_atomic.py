"""Atomic writes: whole files only, unique temporary names, the user's umask."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from imdb_sentiment.atomic import current_umask, write_json, write_text


def test_threads_writing_one_file_never_mix_their_content(tmp_path: Path) -> None:
    target = tmp_path / "LATEST"
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for _ in range(50):
                write_text(target, f"run-{k}\n" * 200)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1 and lines.pop().startswith("run-")
    assert [p.name for p in tmp_path.iterdir()] == ["LATEST"]  # no temporary left behind


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        write_json(tmp_path / "m.json", {"a": float("nan"), "p": tmp_path})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o640
    assert json.loads((tmp_path / "m.json").read_text())["p"] == str(tmp_path)
