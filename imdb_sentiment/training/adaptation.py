"""What an adaptation run is given and what it records: its settings (besides the shared
:class:`~imdb_sentiment.config.Config`), the masked-LM defaults, and its manifest."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment import __version__
from imdb_sentiment.config import Config
from imdb_sentiment.errors import ConfigError, RunError

if TYPE_CHECKING:
    from imdb_sentiment.data.corpus import Corpus

MANIFEST_FILE = "adapt_manifest.json"
"""In the run directory, and as ``adaptation.json`` in its ``model/`` folder."""

MODEL_MANIFEST_FILE = "adaptation.json"

ADAPT_DEFAULTS: dict[str, Any] = {
    "training.learning_rate": 5e-5,
    "training.epochs": 1.0,
    "training.batch_size": 32,
    "training.warmup_ratio": 0.06,
}
"""What ``adapt`` uses where neither a flag, ``--set`` nor ``--config`` names the key: the
usual masked-LM recipe (BERT, RoBERTa), not the classifier's."""


@dataclass
class AdaptSettings:
    """What to adapt on and how, besides the shared :class:`Config`."""

    unlabelled: list[str] = field(default_factory=list)
    include_train: bool = False
    drop_overlap: bool = False
    pack: bool = True
    mlm_probability: float = 0.15
    max_texts: int | None = None
    holdout: int = 500
    text_column: str = "text"

    def check(self) -> AdaptSettings:
        """Raise :class:`ConfigError` for a value out of range; return ``self``."""
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"--mlm-probability must be in (0, 1), got {self.mlm_probability}")
        if self.max_texts is not None and self.max_texts < 1:
            raise ConfigError(f"--max-texts must be at least 1, got {self.max_texts}")
        if self.holdout < 0:
            raise ConfigError(f"--holdout must not be negative, got {self.holdout}")
        return self

    @classmethod
    def saved(cls, run_dir: Path) -> AdaptSettings:
        """The settings an adaptation run started with (for ``--resume``)."""
        manifest = read_manifest(run_dir)
        known = {
            k: v
            for k, v in (manifest.get("settings") or {}).items()
            if k in cls.__dataclass_fields__
        }
        return cls(**known)


@dataclass
class AdaptResult:
    """What a finished adaptation produced."""

    run_dir: Path
    model_dir: Path
    manifest: dict[str, Any]
    world_size: int
    already_finished: bool = False


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """An adaptation run's manifest; :class:`RunError` when the folder holds none."""
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        raise RunError(f"{run_dir} holds no adaptation run ({MANIFEST_FILE} is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RunError(f"{path} is corrupt; start the adaptation again") from None
    return manifest if isinstance(manifest, dict) else {}


def new_manifest(
    cfg: Config, settings: AdaptSettings, corpus: Corpus, train_texts: int, holdout_texts: int
) -> dict[str, Any]:
    """A new run's manifest: what it reads, how it trains; the result comes later."""
    return {
        "kind": "masked-lm adaptation",
        "base_model": cfg.model.name,
        "data_dir": str(Path(cfg.data.dir).expanduser().resolve()),
        "corpus": corpus.record(),
        "used": {
            "train_texts": train_texts,
            "holdout_texts": holdout_texts,
            "sample_seed": cfg.training.seed,
        },
        "settings": asdict(settings),
        "config": cfg.to_dict(),
        "result": {},
        "imdb_sentiment_version": __version__,
    }
