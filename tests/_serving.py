"""Helpers for tests that talk to the server: readiness polling and a live uvicorn on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


def wait_ready(client: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``/ready`` until the model is loaded; return its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/ready")
        if r.status_code == 200:
            return dict(r.json())
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not ready after {timeout}s: {r.text}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    import httpx
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        with httpx.Client(base_url=base, timeout=10) as client:
            wait_ready(client)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_with_reference(trained_run: Any, dest: Any) -> Any:
    """A copy of ``trained_run`` at ``dest`` with a drift reference (the shared run stays as
    it is); the reference is built only when training did not write one."""
    import shutil

    from imdb_sentiment.monitoring.reference import REFERENCE_DIR, REFERENCE_FILE, build_reference

    shutil.copytree(trained_run, dest)
    if not (dest / REFERENCE_DIR / REFERENCE_FILE).is_file():
        build_reference(dest, limit=200)
    return dest
