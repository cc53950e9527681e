"""The DVC pipeline (dvc.yaml, params.yaml): `train --config params.yaml` reads the project's
params file, every `${...}` of dvc.yaml names one of its values, and `dvc repro` on a tiny model
and data set runs download -> train -> eval, records metrics and then has nothing left to do."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT, cli_env

from imdb_sentiment.config import resolve
from imdb_sentiment.errors import ConfigError

PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
DVC_YAML = (REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8")


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"params.yaml has no {dotted}"
        value = value[part]
    return value


def test_train_reads_the_params_file_and_skips_the_other_verbs_sections(tmp_path: Path) -> None:
    cfg = resolve(REPO_ROOT / "params.yaml", device="cpu")
    assert cfg.model.name == PARAMS["model"]["name"]
    assert cfg.training.learning_rate == PARAMS["training"]["learning_rate"]
    assert cfg.run.name == PARAMS["run"]["name"] and cfg.run.overwrite
    assert cfg.sources["training.learning_rate"] == "config file"
    assert {"download", "eval"} <= set(PARAMS)
    # Only the sections that feed other verbs are skipped: a misspelt one is still an error.
    typo = tmp_path / "params.yaml"
    typo.write_text(yaml.safe_dump({**PARAMS, "trainig": {"epochs": 1}}))
    with pytest.raises(ConfigError, match="unknown config section 'trainig'"):
        resolve(typo)


def test_every_dvc_yaml_value_comes_from_params_yaml() -> None:
    keys = set(re.findall(r"\$\{([^}]+)\}", DVC_YAML)) - {"item"}
    assert {"download.source", "data.dir", "run.output_dir", "run.name", "eval.splits"} <= keys
    for key in keys:
        _lookup(PARAMS, key)


def _tiny_params(model: Path, source: Path) -> dict[str, Any]:
    """The project's params.yaml with a tiny model and data set (tests/conftest.py)."""
    params = json.loads(json.dumps(PARAMS))
    params["download"].update(source=str(source), validation_fraction=0.2, seed=0)
    params["data"].update(max_train_samples=None, max_eval_samples=None)
    params["model"].update(name=str(model), max_length=64)
    params["training"].update(
        learning_rate=5e-3, epochs=2, batch_size=8, warmup_ratio=0.0, precision="fp32"
    )
    params["run"]["report_to"] = "none"
    params["eval"]["splits"] = ["test"]
    return params


def _dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{output[-5000:]}"
    return output


def test_dvc_repro_runs_the_pipeline_then_skips_it(
    tmp_path: Path, tiny_model: Path, synthetic_source: Path
) -> None:
    if importlib.util.find_spec("dvc") is None:
        pytest.skip("dvc is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    if shutil.which("git") is None:
        pytest.skip("git is not installed; DVC pipelines live in a git repository")
    repo = tmp_path / "repo"
    repo.mkdir()
    # The project's own DVC files, as a clone has them; only params.yaml is the test's.
    (repo / ".dvc").mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore"):
        shutil.copy(REPO_ROOT / name, repo / name)
    (repo / "params.yaml").write_text(
        yaml.safe_dump(_tiny_params(tiny_model, synthetic_source), sort_keys=False)
    )
    bin_dir = str(Path(sys.executable).parent)  # where imdb-sentiment is installed
    env = {
        **cli_env(),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)

    first = _dvc(repo, env, "repro")
    for stage in ("download", "train", "eval@test"):
        assert f"Running stage '{stage}'" in first
    run, report = repo / "runs" / "dvc", repo / "runs" / "dvc-eval" / "test"
    assert (repo / "data" / "imdb" / "manifest.json").is_file()
    assert (run / "model" / "model.safetensors").is_file()
    for out in ("predictions.parquet", "report.md", "plots"):
        assert (report / out).exists(), out
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))
    assert set(lock["stages"]) == {"download", "train", "eval@test"}
    assert (repo / ".dvc" / "cache").is_dir()  # outputs were cached, ready for `dvc push`

    accuracy = json.loads((report / "metrics.json").read_text(encoding="utf-8"))["accuracy"]
    shown = json.loads(_dvc(repo, env, "metrics", "show", "--json"))
    metrics = shown[""]["data"]["runs/dvc-eval/test/metrics.json"]["data"]
    assert metrics["accuracy"] == accuracy
    assert "accuracy" in _dvc(repo, env, "metrics", "show")

    model_mtime = (run / "model" / "model.safetensors").stat().st_mtime_ns
    second = _dvc(repo, env, "repro")
    for stage in ("download", "train", "eval@test"):
        assert f"Stage '{stage}' didn't change, skipping" in second
    assert "Running stage" not in second
    assert (run / "model" / "model.safetensors").stat().st_mtime_ns == model_mtime
