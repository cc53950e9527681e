#!/usr/bin/env python
"""Inject file-system, permission, serving and input faults into the real CLI and server, and
record what the tool did: exit code, first error line, and what was kept.

    .venv/bin/python scripts/fault_injection.py            # writes docs/results/faults.json
    .venv/bin/python scripts/fault_injection.py --markdown docs/FAULTS.md

Everything happens in a temporary folder: a tiny DistilBERT (the test suite's) is trained on
synthetic reviews through the CLI, then each fault is made real where this machine allows (a
read-only bind mount or chmod, a small tmpfs for a full disk, another effective uid for an
unreadable file) and skipped with the reason where it does not. Each CLI call is a fresh
process (``python -m imdb_sentiment``), as a user would run it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fault_tools import IS_ROOT, Unavailable, as_other_user, fill, read_only, tiny_disk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny model and synthetic reviews of the tests

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
}
Fault = dict[str, Any]


def cli(*args: str | Path, cwd: Path | None = None) -> dict[str, Any]:
    """Run the CLI in a fresh process; its exit code and first error line (or last line)."""
    proc = subprocess.run(
        [sys.executable, "-m", "imdb_sentiment", *map(str, args)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=600,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    first = errors[0] if errors else (lines[-1] if lines else "")
    return {
        "exit_code": proc.returncode,
        "stderr": first[:300],
        "traceback": "Traceback" in proc.stderr,
    }


# ----------------------------------------------------------------------------- the setup


def setup(root: Path) -> dict[str, Path]:
    """A tiny model, synthetic prepared data and one trained run, all through the CLI."""
    from conftest import build_tiny_model, synthetic_frame, tiny_train_args

    model = build_tiny_model(root / "tiny-model")
    source = root / "source"
    source.mkdir()
    synthetic_frame(300, seed=1).to_parquet(source / "train.parquet", index=False)
    synthetic_frame(80, seed=2).to_parquet(source / "test.parquet", index=False)
    data = root / "data"
    for args in (
        ["download", "--source", source, "--output", data],
        # Kept so that the checkpoint file modes can be checked after the run.
        tiny_train_args(model, data, root / "runs", "tiny", "--keep-checkpoints"),
    ):
        result = cli(*args, cwd=root)
        if result["exit_code"] != 0:
            raise SystemExit(f"setup failed: {args[0]}: {result}")
    return {
        "model": model,
        "source": source,
        "data": data,
        "run": root / "runs" / "tiny",
        "root": root,
    }


def fresh_run(ctx: dict[str, Path], name: str) -> Path:
    copy = ctx["root"] / "copies" / name
    shutil.copytree(ctx["run"], copy)
    return copy


# ------------------------------------------------------------------------------ the faults


def f_model_file_modes(ctx: dict[str, Path]) -> Fault:
    modes = {
        p.name: oct(p.stat().st_mode & 0o777)
        for p in (ctx["run"] / "model").iterdir()
        if p.is_file()
    }
    mask = os.umask(0o022)
    os.umask(mask)
    return {
        "fault": "model files after train (umask " + oct(mask) + ")",
        "exit_code": 0,
        "stderr": "",
        "kept": f"model.safetensors {modes.get('model.safetensors')}; "
        f"all files {sorted(set(modes.values()))}",
    }


def f_checkpoint_file_modes(ctx: dict[str, Path]) -> Fault:
    files = [p for p in (ctx["run"] / "checkpoints").rglob("*") if p.is_file()]
    modes = {oct(p.stat().st_mode & 0o777) for p in files}
    weights = {oct(p.stat().st_mode & 0o777) for p in files if p.name == "model.safetensors"}
    mask = os.umask(0o022)
    os.umask(mask)
    return {
        "fault": "checkpoint files after train (umask " + oct(mask) + ")",
        "exit_code": 0,
        "stderr": "",
        "kept": f"checkpoint model.safetensors {sorted(weights)}; all "
        f"{len(files)} files {sorted(modes)}",
    }


def f_train_small_disk(ctx: dict[str, Path]) -> Fault:
    weights = (ctx["model"] / "model.safetensors").stat().st_size
    # Room for the model and a checkpoint, not for the three checkpoints kept at once.
    with tiny_disk(ctx["root"] / "disk-train", f"{6 * weights // 1024}k") as disk:
        result = cli(
            "train",
            "--model",
            ctx["model"],
            "--data",
            ctx["data"],
            "--output-dir",
            disk / "runs",
            "--run-name",
            "x",
            "--max-length",
            "64",
            "--epochs",
            "1",
            "--report-to",
            "none",
        )
        left = sorted(p.name for p in disk.iterdir())
    return {
        "fault": f"train onto a disk too small ({6 * weights // 1024} KB tmpfs, weights "
        f"{weights // 1024} KB)",
        **result,
        "kept": f"refused before tokenizing; left on the disk: {left}",
    }


def f_unreadable_weights(ctx: dict[str, Path]) -> Fault:
    from typer.testing import CliRunner

    from imdb_sentiment.cli.app import app

    base = Path(tempfile.mkdtemp(prefix="imdb-perm-"))
    base.chmod(0o755)
    model = base / "model"
    shutil.copytree(ctx["run"] / "model", model)
    model.chmod(0o755)
    (model / "model.safetensors").chmod(0o600 if IS_ROOT else 0)
    try:
        with as_other_user():
            result = CliRunner().invoke(app, ["serve", str(model)])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    line = next((ln for ln in result.output.splitlines() if ln.startswith("error:")), "")
    return {
        "fault": "serve a model whose weights another user wrote 0600",
        "exit_code": result.exit_code,
        "stderr": line,
        "kept": "nothing started",
    }


def f_health_without_model(ctx: dict[str, Path]) -> Fault:
    import time

    from fastapi.testclient import TestClient

    from imdb_sentiment.serving.app import create_app

    with TestClient(create_app(ctx["root"] / "no-such-run")) as client:
        for _ in range(100):
            if client.get("/ready").json().get("detail", "").startswith("no such"):
                break
            time.sleep(0.05)
        health = client.get("/health")
    return {
        "fault": "serve: model fails to load; GET /health (Docker HEALTHCHECK)",
        "exit_code": health.status_code,
        "stderr": health.json().get("detail", ""),
        "kept": "/ready 503 as before",
    }


def f_train_read_only(ctx: dict[str, Path]) -> Fault:
    out = ctx["root"] / "ro-runs"
    out.mkdir()
    with read_only(out) as how:
        result = cli(
            "train",
            "--model",
            ctx["model"],
            "--data",
            ctx["data"],
            "--output-dir",
            out,
            "--run-name",
            "x",
            "--max-length",
            "32",
            "--epochs",
            "1",
            "--report-to",
            "none",
        )
    return {
        "fault": f"train --output-dir on a read-only folder ({how})",
        **result,
        "kept": f"folder contents {sorted(os.listdir(out))}",
    }


def f_download_read_only(ctx: dict[str, Path]) -> Fault:
    out = ctx["root"] / "ro-data"
    out.mkdir()
    with read_only(out) as how:
        result = cli("download", "--source", ctx["source"], "--output", out / "imdb")
    return {
        "fault": f"download --output in a read-only folder ({how})",
        **result,
        "kept": "nothing written; source not read",
    }


def f_download_file_in_the_way(ctx: dict[str, Path]) -> Fault:
    blocker = ctx["root"] / "a-file"
    blocker.write_text("x")
    result = cli("download", "--source", ctx["source"], "--output", blocker / "imdb")
    return {
        "fault": "download --output under a file (a file where a folder should be)",
        **result,
        "kept": f"{blocker.name} unchanged: {blocker.read_text() == 'x'}",
    }


def f_download_full_disk(ctx: dict[str, Path]) -> Fault:
    with tiny_disk(ctx["root"] / "disk-dl", "512k") as disk:
        shutil.copytree(ctx["data"], disk / "imdb")
        before = (disk / "imdb" / "manifest.json").read_bytes()
        result = cli("download", "--source", ctx["source"], "--output", disk / "imdb", "--force")
        kept = (disk / "imdb" / "manifest.json").read_bytes() == before
    return {
        "fault": "download --force onto a disk too small (512 KB tmpfs)",
        **result,
        "kept": f"old prepared data intact: {kept}",
    }


def f_predict_read_only(ctx: dict[str, Path]) -> Fault:
    out = ctx["root"] / "ro-out"
    out.mkdir()
    with read_only(out) as how:
        result = cli("predict", "--model", ctx["run"], "--output", out / "p.csv", "great film")
    return {
        "fault": f"predict --output in a read-only folder ({how})",
        **result,
        "kept": "model not loaded",
    }


def f_predict_missing_folder(ctx: dict[str, Path]) -> Fault:
    out = ctx["root"] / "new" / "deeper" / "p.csv"
    result = cli("predict", "--model", ctx["run"], "--output", out, "great film")
    return {
        "fault": "predict --output in a folder that does not exist",
        **result,
        "kept": f"folder created, file written: {out.is_file()}",
    }


def f_predict_full_disk(ctx: dict[str, Path]) -> Fault:
    with tiny_disk(ctx["root"] / "disk-pred", "256k") as disk:
        old = disk / "p.csv"
        old.write_text("text,label\nearlier,positive\n")
        fill(disk)
        result = cli(
            "predict",
            "--model",
            ctx["run"],
            "--output",
            old,
            "--overwrite",
            *(["a long review of a great film " * 40] * 20),
        )
        kept = old.read_text() == "text,label\nearlier,positive\n"
        leftovers = sorted(p.name for p in disk.iterdir() if p.name not in ("p.csv", "filler"))
    return {
        "fault": "predict --output --overwrite on a full disk",
        **result,
        "kept": f"old file intact: {kept}; leftovers {leftovers}",
    }


def f_eval_read_only(ctx: dict[str, Path]) -> Fault:
    run = fresh_run(ctx, "eval-ro")
    out = ctx["root"] / "eval-out"
    with read_only(run) as how:
        refused = cli("eval", run, "--split", "validation", "--no-report")
        moved = cli("eval", run, "--split", "validation", "--no-report", "--output-dir", out)
    return {
        "fault": f"eval on a read-only run, the README's :ro mount ({how})",
        **refused,
        "kept": f"with --output-dir: exit {moved['exit_code']}, metrics.json written: "
        f"{(out / 'metrics.json').is_file()}",
    }


def f_export_read_only(ctx: dict[str, Path]) -> Fault:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise Unavailable("onnxruntime is not installed") from exc
    run = fresh_run(ctx, "export-ro")
    with read_only(run) as how:
        result = cli("export", run, "--max-samples", "5")
    return {
        "fault": f"export on a read-only run ({how})",
        **result,
        "kept": "model not loaded, nothing written",
    }


def _bad_data(ctx: dict[str, Path], name: str, change: Callable[[Any], Any]) -> Fault:
    import pandas as pd

    data = ctx["root"] / f"data-{name}"
    shutil.copytree(ctx["data"], data)
    change(pd.read_parquet(data / "train.parquet")).to_parquet(data / "train.parquet")
    runs = ctx["root"] / f"runs-{name}"
    result = cli(
        "train",
        "--model",
        ctx["model"],
        "--data",
        data,
        "--output-dir",
        runs,
        "--run-name",
        "bad",
        "--report-to",
        "none",
    )
    return {**result, "kept": f"run folder created: {(runs / 'bad').exists()}"}


def f_no_label_column(ctx: dict[str, Path]) -> Fault:
    return {
        "fault": "train on prepared data without a label column",
        **_bad_data(ctx, "nolabel", lambda f: f.drop(columns=["label"])),
    }


def f_labels_outside(ctx: dict[str, Path]) -> Fault:
    return {
        "fault": "train on prepared data with labels outside 0/1",
        **_bad_data(ctx, "label2", lambda f: f.assign(label=2)),
    }


def _damaged(ctx: dict[str, Path], name: str, damage: Callable[[Path], None]) -> Fault:
    run = fresh_run(ctx, name)
    damage(run)
    return cli("predict", "--model", run, "great film")


def f_truncated_weights(ctx: dict[str, Path]) -> Fault:
    def cut(run: Path) -> None:
        weights = run / "model" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:5000])

    return {
        "fault": "predict with a truncated model.safetensors",
        **_damaged(ctx, "trunc", cut),
        "kept": "files untouched",
    }


def f_corrupt_settings(ctx: dict[str, Path]) -> Fault:
    return {
        "fault": "predict with a corrupt imdb_sentiment.json",
        "kept": "files untouched",
        **_damaged(
            ctx,
            "settings",
            lambda r: (r / "model" / "imdb_sentiment.json").write_text('{"max_length": '),
        ),
    }


def f_corrupt_status(ctx: dict[str, Path]) -> Fault:
    def damage(run: Path) -> None:
        shutil.rmtree(run / "model")
        (run / "status.json").write_text('{"state": ')

    return {
        "fault": "predict on a run without a model and a corrupt status.json",
        **_damaged(ctx, "status", damage),
        "kept": "files untouched",
    }


def f_corrupt_latest(ctx: dict[str, Path]) -> Fault:
    cwd = ctx["root"] / "latest"
    (cwd / "runs").mkdir(parents=True)
    (cwd / "runs" / "LATEST").write_bytes(b"\xff\xfe\x00garbage")
    return {
        "fault": "predict with a corrupt runs/LATEST",
        **cli("predict", "great", cwd=cwd),
        "kept": "LATEST untouched",
    }


def f_eval_one_class(ctx: dict[str, Path]) -> Fault:
    import pandas as pd

    frame = pd.read_parquet(ctx["data"] / "test.parquet")
    path = ctx["root"] / "positive.csv"
    frame[frame["label"] == 1].head(20).to_csv(path, index=False)
    out = ctx["root"] / "one-class"
    result = cli("eval", ctx["run"], "--file", path, "--no-report", "--output-dir", out)
    text = (out / "metrics.json").read_text() if (out / "metrics.json").is_file() else ""
    return {
        "fault": "eval on a one-class file",
        **result,
        "kept": f"bare NaN in metrics.json: {'NaN' in text}; "
        f"roc_auc: {json.loads(text)['roc_auc'] if text else 'n/a'}",
    }


def f_server_inputs(ctx: dict[str, Path]) -> list[Fault]:
    import time

    from fastapi.testclient import TestClient

    from imdb_sentiment.serving.app import create_app

    rows = []
    with TestClient(create_app(ctx["run"])) as client:
        for _ in range(400):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        for fault, kwargs in (
            (
                "POST /predict: a review of zero-width characters only",
                {"json": {"text": "\u200b\u200c\u2060"}},
            ),
            (
                "POST /predict: JSON without a Content-Type header",
                {"content": b'{"text": "great"}'},
            ),
        ):
            r = client.post("/predict", **kwargs)
            rows.append(
                {
                    "fault": fault,
                    "exit_code": r.status_code,
                    "stderr": r.json()["detail"],
                    "kept": "server keeps serving",
                }
            )
        docs = client.get("/docs")
        rows.append(
            {
                "fault": "GET /docs offline",
                "exit_code": docs.status_code,
                "stderr": "",
                "kept": f"loads from a CDN: {'cdn' in docs.text.lower()}",
            }
        )
    return rows


def f_flags(ctx: dict[str, Path]) -> list[Fault]:
    return [
        {
            "fault": "predict --batch-size 0",
            "kept": "model not loaded",
            **cli("predict", "--model", ctx["run"], "--batch-size", "0", "x"),
        },
        {
            "fault": "serve --port 70000",
            "kept": "model not loaded",
            **cli("serve", ctx["run"], "--port", "70000"),
        },
    ]


FAULTS: list[Callable[[dict[str, Path]], Fault | list[Fault]]] = [
    f_model_file_modes,
    f_checkpoint_file_modes,
    f_unreadable_weights,
    f_health_without_model,
    f_train_read_only,
    f_train_small_disk,
    f_download_read_only,
    f_download_file_in_the_way,
    f_download_full_disk,
    f_predict_read_only,
    f_predict_missing_folder,
    f_predict_full_disk,
    f_eval_read_only,
    f_export_read_only,
    f_no_label_column,
    f_labels_outside,
    f_truncated_weights,
    f_corrupt_settings,
    f_corrupt_status,
    f_corrupt_latest,
    f_eval_one_class,
    f_server_inputs,
    f_flags,
]


def run_all(root: Path) -> list[Fault]:
    ctx = setup(root)
    rows: list[Fault] = []
    for fault in FAULTS:
        try:
            out = fault(ctx)
        except Unavailable as skip:
            out = {"fault": fault.__name__[2:], "skipped": str(skip)}
        rows.extend(out if isinstance(out, list) else [out])
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def markdown(rows: list[Fault]) -> str:
    lines = ["| fault | exit / HTTP | first error line | what was kept |", "|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['fault']} | skipped | {r['skipped']} | |")
            continue
        line = str(r.get("stderr", "")).replace("|", "\\|")
        tb = " (traceback!)" if r.get("traceback") else ""
        lines.append(f"| {r['fault']} | {r['exit_code']}{tb} | {line} | {r.get('kept', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default=str(REPO / "docs" / "results" / "faults.json"))
    parser.add_argument("--markdown", help="Also write the table to this file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imdb-faults-") as tmp:
        rows = run_all(Path(tmp))
    # Temporary paths differ on every run: show them as <tmp>.
    rows = json.loads(re.sub(r"/tmp/imdb-(faults|perm)-[A-Za-z0-9_]+", "<tmp>", json.dumps(rows)))
    Path(args.json).write_text(
        json.dumps(
            {"command": "python scripts/fault_injection.py", "as_root": IS_ROOT, "faults": rows},
            indent=2,
        )
        + "\n"
    )
    table = markdown(rows)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print(table)


if __name__ == "__main__":
    main()
