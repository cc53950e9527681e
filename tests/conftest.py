"""Shared fixtures: synthetic reviews, a tiny DistilBERT and tokenizer, prepared data, a run.

Everything is built at test time, offline, on CPU, in seconds.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The fault tests make faults with the helpers scripts/fault_injection.py uses (fault_tools).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

POSITIVE = [
    "wonderful",
    "brilliant",
    "superb",
    "moving",
    "delightful",
    "masterpiece",
    "great",
    "excellent",
    "loved",
    "beautiful",
    "charming",
    "gripping",
]
NEGATIVE = [
    "awful",
    "boring",
    "terrible",
    "dull",
    "waste",
    "horrible",
    "bad",
    "worst",
    "hated",
    "tedious",
    "clumsy",
    "painful",
]
FILLER = [
    "the",
    "film",
    "movie",
    "plot",
    "actor",
    "scene",
    "story",
    "was",
    "and",
    "it",
    "director",
    "camera",
    "music",
    "ending",
    "a",
    "of",
    "is",
    "this",
    "with",
    "cast",
    "script",
    "hour",
    "minutes",
    "character",
    "role",
    "very",
    "quite",
    "really",
    "i",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_IMDB = Path(os.environ.get("IMDB_DATA_DIR", REPO_ROOT.parent / "shared" / "imdb"))


def cli_env() -> dict[str, str]:
    """Environment for a CLI subprocess: one thread, and none of the distributed variables an
    outer launcher may have set (the command must decide on its processes itself)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE"):
        env.pop(var, None)
    return env


def wait_for_checkpoint(proc: subprocess.Popen[str], run: Path, seconds: float) -> None:
    """Block until ``run`` holds a complete checkpoint, failing if ``proc`` ends first."""
    from imdb_sentiment.runs.checkpoints import newest_complete_checkpoint

    deadline = time.monotonic() + seconds
    while newest_complete_checkpoint(run)[0] is None:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"no checkpoint within {seconds:.0f} s"
        time.sleep(0.1)


def synthetic_review(label: int, rng: random.Random, length: int | None = None) -> str:
    """A review whose sentiment words say its label, padded with neutral filler."""
    n = length if length is not None else rng.randint(8, 60)
    words = [rng.choice(FILLER) for _ in range(n)]
    cues = POSITIVE if label == 1 else NEGATIVE
    for _ in range(rng.randint(2, 5)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
    text = " ".join(words)
    # Some reviews carry IMDB's HTML line breaks, as the real data does.
    if rng.random() < 0.3:
        text = text.replace(" and ", " and<br /><br />", 1)
    return text.capitalize() + "."


def tiny_train_args(model: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    """`train` flags for a short, deterministic CLI run of the tiny model."""
    return [
        "train",
        "--model",
        str(model),
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--run-name",
        name,
        "--max-length",
        "64",
        "--lr",
        "5e-3",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--report-to",
        "none",
        "--precision",
        "fp32",  # auto is bf16 on AMX CPUs: alike on every machine
        *extra,
    ]


def synthetic_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    rng.shuffle(labels)
    return pd.DataFrame(
        {
            "text": [synthetic_review(y, rng) for y in labels],
            "label": labels,
            "rating": [
                rng.choice([7, 8, 9, 10]) if y else rng.choice([1, 2, 3, 4]) for y in labels
            ],
        }
    )


def build_tiny_model(path: Path) -> Path:
    """A 2-layer, width-32 DistilBERT encoder and a WordPiece tokenizer over the synthetic words."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = [
        *SPECIAL,
        *sorted(set(POSITIVE + NEGATIVE + FILLER)),
        *letters,
        *".,!?<>/",
        *("##" + c for c in letters),
    ]
    tokenizer = DistilBertTokenizerFast(
        vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=512
    )
    tokenizer.save_pretrained(path)
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    # Seeded without touching the global generator: the encoder's weights, and so every test
    # that reads its raw output, must not depend on which tests ran before the fixture.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = DistilBertModel(config)
    encoder.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"))


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local IMDB-shaped source: train.parquet (400 reviews) and test.parquet (100)."""
    root = tmp_path_factory.mktemp("synthetic-imdb")
    synthetic_frame(400, seed=1).to_parquet(root / "train.parquet", index=False)
    synthetic_frame(100, seed=2).to_parquet(root / "test.parquet", index=False)
    return root


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory: pytest.TempPathFactory, synthetic_source: Path) -> Path:
    from imdb_sentiment.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "imdb"
    prepare(str(synthetic_source), out, validation_fraction=0.2, seed=0, log=lambda _m: None)
    return out


def tiny_train_overrides(model: Path, data: Path, output_dir: Path, name: str) -> dict:
    return {
        "model.name": str(model),
        "model.max_length": 64,
        "data.dir": str(data),
        "run.output_dir": str(output_dir),
        "run.name": name,
        "run.report_to": "none",
        "training.learning_rate": 5e-3,
        "training.epochs": 2,
        "training.batch_size": 8,
        "training.logging_steps": 5,
        "training.warmup_ratio": 0.0,
        # auto is bf16 autocast on AMX CPUs: pinned so tests train alike on every machine.
        "training.precision": "fp32",
    }


@pytest.fixture(scope="session")
def trained_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, prepared_data: Path
) -> Path:
    """One real (tiny) training run shared by the eval, predict and serving tests."""
    from imdb_sentiment.config import resolve
    from imdb_sentiment.training.loop import train

    runs = tmp_path_factory.mktemp("runs")
    overrides = tiny_train_overrides(tiny_model, prepared_data, runs, "tiny")
    # test_fs_faults checks the checkpoints' file modes.
    cfg = resolve(overrides={**overrides, "training.keep_checkpoints": True})
    result = train(cfg, log=lambda _m: None)
    return result.run_dir
