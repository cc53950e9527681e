#!/usr/bin/env python
"""Bounded load test of `imdb-sentiment serve` over loopback: requests/s and latency percentiles.

Each of C concurrent clients posts one review per request (``{"text": ...}``), back to back, for
a fixed time. With ``--serve RUN`` the script starts the server itself, once with server-side
batching and once without, and measures every concurrency level against both:

    .venv/bin/python scripts/loadtest.py \\
        --serve runs/minilm-2k --concurrency 1,16 --duration 20 \\
        --data data/imdb --markdown loadtest.md

``runs/minilm-2k`` is any run directory (``make demo DEMO_RUN=minilm-2k`` makes one) and
``data/imdb`` the folder ``imdb-sentiment download`` writes.

Without ``--serve`` it measures the server already listening at ``--url`` (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def load_reviews(path: str | None, n: int) -> list[str]:
    """Real reviews from a prepared split / parquet file, or a few built-in ones."""
    if path:
        import pandas as pd

        p = Path(path)
        frame = pd.read_parquet(p / "validation.parquet" if p.is_dir() else p)
        return frame["text"].sample(n=min(n, len(frame)), random_state=0).tolist()
    return [
        "A wonderful, moving film with a brilliant cast.",
        "Two hours of my life I will never get back. The plot made no sense at all.",
        "The acting was fine but the script was dull and the ending fell flat.",
    ] * (n // 3 + 1)


async def client_loop(
    client: Any,
    reviews: list[str],
    offset: int,
    stop_at: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    i = offset
    while time.perf_counter() < stop_at:
        text = reviews[i % len(reviews)]
        i += 1
        start = time.perf_counter()
        try:
            r = await client.post("/predict", json={"text": text})
            ok = r.status_code == 200
        except Exception:  # connection errors count as failures, the run goes on
            ok = False
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(1)


async def measure(
    url: str, reviews: list[str], concurrency: int, duration: float, api_key: str | None
) -> dict[str, Any]:
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:
        # Warm-up: one request per client, not measured.
        await asyncio.gather(
            *[client.post("/predict", json={"text": reviews[i]}) for i in range(concurrency)]
        )
        latencies: list[float] = []
        errors: list[int] = []
        start = time.perf_counter()
        stop_at = start + duration
        await asyncio.gather(
            *[
                client_loop(client, reviews, k * 97, stop_at, latencies, errors)
                for k in range(concurrency)
            ]
        )
        elapsed = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "mean_ms": float(lat.mean()) if len(lat) else None,
    }


def batch_stats(url: str, api_key: str | None) -> dict[str, float]:
    """Mean reviews per model call, from the server's own /metrics."""
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("imdb_sentiment_batch_size_sum", "imdb_sentiment_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("imdb_sentiment_batch_size_count", 0)
    return {
        "model_calls": count,
        "mean_batch": values.get("imdb_sentiment_batch_size_sum", 0) / count if count else 0,
    }


def start_server(
    run: str, port: int, batching: bool, window_ms: float, extra: list[str]
) -> subprocess.Popen[str]:
    import httpx

    cmd = [
        sys.executable,
        "-m",
        "imdb_sentiment",
        "serve",
        run,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--batching" if batching else "--no-batching",
        "--batch-window-ms",
        str(window_ms),
        *extra,
    ]
    env = {**os.environ, "IMDB_SENTIMENT_API_KEY": ""}
    proc = subprocess.Popen(cmd, env=env, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("server did not become ready in 180 s")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    serving = f" `serve {meta['serve_args']}`," if meta.get("serve_args") else ""
    lines = [
        f"{meta['reviews']} distinct reviews ({meta['source']}), {meta['duration']:.0f} s per "
        f"level, one review per request,{serving} client and server on the same "
        f"{meta['cores']}-core machine ({meta.get('cpu', 'CPU not recorded')}) over loopback.",
        "",
        "| server-side batching | clients | requests/s | p50 ms | p99 ms | mean reviews per "
        "model call | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batching']} | {r['concurrency']} | {r['requests_per_s']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r.get('mean_batch', 0):.1f} | "
            f"{r['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--serve",
        metavar="RUN",
        help="Start the server for RUN, with and without batching, and measure both.",
    )
    parser.add_argument("--port", type=int, default=8765, help="Port for --serve.")
    parser.add_argument("--serve-args", default="", help="Extra `serve` flags for --serve.")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds per level.")
    parser.add_argument("--data", help="Prepared data folder or parquet file of reviews.")
    parser.add_argument("--reviews", type=int, default=500)
    parser.add_argument("--api-key", default=os.environ.get("IMDB_SENTIMENT_API_KEY"))
    parser.add_argument("--out", default="loadtest.json")
    parser.add_argument("--markdown")
    parser.add_argument(
        "--label",
        default="",
        help="What this measurement is, kept in --out (e.g. the backend and machine).",
    )
    args = parser.parse_args()

    levels = [int(c) for c in args.concurrency.split(",")]
    reviews = load_reviews(args.data, args.reviews)
    rows: list[dict[str, Any]] = []
    if args.serve:
        for batching in (True, False):
            proc = start_server(
                args.serve, args.port, batching, args.window_ms, args.serve_args.split()
            )
            url = f"http://127.0.0.1:{args.port}"
            try:
                for c in levels:
                    before = batch_stats(url, None)
                    row = asyncio.run(measure(url, reviews, c, args.duration, None))
                    after = batch_stats(url, None)
                    calls = after["model_calls"] - before["model_calls"]
                    reviews_done = (
                        after["mean_batch"] * after["model_calls"]
                        - before["mean_batch"] * before["model_calls"]
                    )
                    row.update(
                        batching="on" if batching else "off",
                        mean_batch=reviews_done / calls if calls else 0,
                    )
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    else:
        host = urlparse(args.url).hostname or ""
        if host not in LOOPBACK:
            raise SystemExit(f"refusing to load-test {host}: loopback only")
        for c in levels:
            row = asyncio.run(measure(args.url, reviews, c, args.duration, args.api_key))
            row["batching"] = "?"
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    from imdb_sentiment.hardware import cpu_name

    meta = {
        "reviews": len(set(reviews)),
        "source": args.data or "built-in examples",
        "duration": args.duration,
        "cores": os.cpu_count(),
        "cpu": cpu_name(),
        "serve_args": args.serve_args,
        "label": args.label,
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    table = markdown(rows, meta)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
