#!/usr/bin/env python
"""Host side of scripts/container_smoke.sh: the offline inputs and the HTTP checks.

    python scripts/container_smoke.py fixture OUT     # OUT/model (tiny DistilBERT), OUT/data
    python scripts/container_smoke.py probe URL [--timeout S]
    python scripts/container_smoke.py pipconf OUT     # OUT: pip.conf; prints folders to mount

``fixture`` reuses the test suite's tiny model and synthetic reviews (tests/conftest.py), so a
fresh clone needs no model or dataset hub. ``probe`` waits (bounded) for ``/health`` and
``/ready``, posts one positive and one negative review to ``/predict`` and checks the answer's
schema and labels; it prints one line and exits non-zero on the first thing that is wrong.
``pipconf`` folds this host's pip settings (files and PIP_* variables) into one pip.conf for
the image build, and prints the local files and folders those settings name (wheel folders,
file:// indexes, constraints, the CA bundle), which the build must see at the same paths.
"""

from __future__ import annotations

import argparse
import configparser
import json
import math
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
REVIEWS = {
    "positive": "A wonderful, moving film: a brilliant cast and a superb, gripping story.",
    "negative": "An awful, boring film: a terrible plot, dull and tedious, the worst hour.",
}


sys.path.insert(0, str(REPO_ROOT))


def fixture(out: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from conftest import build_tiny_model, synthetic_frame

    from imdb_sentiment.data.prepare import prepare

    build_tiny_model(out / "model")
    source = out / "source"
    source.mkdir(parents=True, exist_ok=True)
    synthetic_frame(400, seed=1).to_parquet(source / "train.parquet", index=False)
    synthetic_frame(100, seed=2).to_parquet(source / "test.parquet", index=False)
    prepare(str(source), out / "data", validation_fraction=0.2, seed=0, log=lambda _m: None)


# Settings that say where packages come from and how to reach them; the rest (targets, caches,
# user installs) describe this host, not the build.
PIP_KEYS = {
    "index-url",
    "extra-index-url",
    "find-links",
    "no-index",
    "constraint",
    "cert",
    "client-cert",
    "trusted-host",
    "proxy",
    "timeout",
    "default-timeout",
    "retries",
}
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _local_path(value: str, key: str) -> Path | None:
    raw = value.removeprefix("file://")
    if not raw.startswith("/"):
        return None
    path = Path(raw)
    # A file:// simple index links to its files with ../../files/...: mount the index's parent.
    if key.endswith("index-url") and path.name == "simple":
        path = path.parent
    return path if path.exists() else None


def pipconf(out: Path) -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], check=True, capture_output=True, text=True
    ).stdout
    settings: dict[str, str] = {}
    for line in listing.splitlines():
        name, _, value = line.partition("=")
        key = name.rsplit(".", 1)[-1]
        # pip lists its sources in the order it applies them: later ones win.
        if key in PIP_KEYS and name.split(".", 1)[0] in {"global", "install", ":env:"}:
            settings[key] = value.strip().strip("'\"")
    if "cert" not in settings and HOST_CA_BUNDLE.exists():
        settings["cert"] = str(HOST_CA_BUNDLE)
    config = configparser.ConfigParser(interpolation=None)
    config["global"] = settings
    with out.open("w", encoding="utf-8") as fh:
        config.write(fh)
    mounts = {
        p
        for key, value in settings.items()
        for word in value.split()
        if (p := _local_path(word, key)) is not None
    }
    if HOST_CA_BUNDLE.exists():
        mounts.add(HOST_CA_BUNDLE)
    for path in sorted(mounts):
        if not any(parent in mounts for parent in path.parents):
            print(path)


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, None


def _wait(url: str, deadline: float) -> None:
    last: object = "no answer"
    while time.monotonic() < deadline:
        try:
            status, _ = _get(url)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, ValueError) as err:
            last = err
        time.sleep(0.5)
    raise SystemExit(f"probe: {url} not ready in time (last: {last})")


def _check_prediction(pred: dict[str, Any], expected: str) -> None:
    keys = {"label", "positive_probability", "confidence", "n_tokens", "truncated", "read_fraction"}
    missing = keys - pred.keys()
    if missing:
        raise SystemExit(f"probe: prediction lacks {sorted(missing)}: {pred}")
    from imdb_sentiment.text import LABELS

    if pred["label"] not in LABELS:
        raise SystemExit(f"probe: label {pred['label']!r} is not one of {LABELS}")
    p = pred["positive_probability"]
    if not (isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0):
        raise SystemExit(f"probe: positive_probability is not a probability: {p!r}")
    if pred["label"] != expected:
        raise SystemExit(f"probe: {expected} review labelled {pred['label']!r} (p={p:.3f})")


def probe(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    _wait(f"{url}/health", deadline)
    _wait(f"{url}/ready", deadline)
    body = json.dumps({"texts": list(REVIEWS.values())}).encode()
    req = urllib.request.Request(
        f"{url}/predict", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.load(resp)
    preds = answer.get("predictions")
    if not isinstance(preds, list) or len(preds) != len(REVIEWS):
        raise SystemExit(f"probe: expected {len(REVIEWS)} predictions, got {answer}")
    if not isinstance(answer.get("model_version"), str):
        raise SystemExit(f"probe: answer has no model_version: {answer}")
    for pred, expected in zip(preds, REVIEWS, strict=True):
        _check_prediction(pred, expected)
    labels = ", ".join(f"{p['label']} ({p['positive_probability']:.2f})" for p in preds)
    print(f"probe: /predict answered {labels}, model_version {answer['model_version']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fix = sub.add_parser("fixture", help="write a tiny model and prepared synthetic data")
    fix.add_argument("out", type=Path)
    pro = sub.add_parser("probe", help="wait for the server, then check /predict")
    pro.add_argument("url")
    pro.add_argument("--timeout", type=float, default=120.0)
    conf = sub.add_parser("pipconf", help="this host's pip settings as one file for the build")
    conf.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "fixture":
        fixture(args.out)
    elif args.command == "pipconf":
        pipconf(args.out)
    else:
        probe(args.url.rstrip("/"), args.timeout)


if __name__ == "__main__":
    main()
