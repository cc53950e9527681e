from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imdb_sentiment.config import Config, coerce, from_dict, parse_set, resolve, valid_keys
from imdb_sentiment.errors import ConfigError


def test_defaults_reproduce_the_distilbert_recipe() -> None:
    cfg = Config()
    assert cfg.model.name == "distilbert-base-uncased"
    assert cfg.training.learning_rate == 2e-5
    assert cfg.training.batch_size == 16
    assert cfg.training.epochs == 2
    assert cfg.training.weight_decay == 0.01
    assert cfg.model.max_length == 512
    assert cfg.model.truncation == "head+tail"
    assert cfg.model.head_budget == 128


def test_precedence_defaults_file_set_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"training": {"learning_rate": 1e-4, "epochs": 3}, "model": {"max_length": 256}}
        )
    )
    cfg = resolve(
        path,
        {"training.learning_rate": 3e-5, "training.epochs": None},
        ["model.max_length=128", "training.seed=7"],
    )
    assert cfg.training.learning_rate == 3e-5  # flag beats file
    assert cfg.training.epochs == 3  # flag not given: file wins
    assert cfg.model.max_length == 128  # --set beats file
    assert cfg.training.seed == 7
    assert cfg.training.batch_size == 16  # default survives
    assert {
        key: cfg.sources[key]
        for key in (
            "training.learning_rate",
            "training.epochs",
            "model.max_length",
            "training.seed",
            "training.eval_batch_size",
        )
    } == {
        "training.learning_rate": "flag",
        "training.epochs": "config file",
        "model.max_length": "--set",
        "training.seed": "--set",
        "training.eval_batch_size": "default",
    }


def test_unknown_yaml_key_lists_valid_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1.0e-4\n")
    with pytest.raises(
        ConfigError, match=r"unknown config key 'training.lr'.*training.learning_rate"
    ):
        resolve(path)


def test_unknown_section_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  lr: 1\n")
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'"):
        resolve(path)
    path.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve(path)
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("training.learning_rate", -1e-5, "must be positive"),
        ("training.epochs", 0, "must be positive"),
        ("training.batch_size", 0, "at least 1"),
        ("training.precision", "fp8", "must be one of"),
        ("model.truncation", "middle", "must be one of"),
        ("model.max_length", 4, "between 8 and 8192"),
        ("run.report_to", "tensorboard", "must be one of"),
        ("run.name", "a/b", "plain folder name"),
        ("training.warmup_ratio", 1.5, r"\[0, 1\)"),
        ("data.max_train_samples", 0, "at least 1"),
        ("training.num_processes", 0, "at least 1"),
    ],
)
def test_invalid_values_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{key}'.*{message}"):
        resolve(overrides={key: value})


def test_coercion_of_set_strings() -> None:
    assert coerce("training.learning_rate", "3e-5") == 3e-5
    assert coerce("training.batch_size", "32") == 32
    assert coerce("training.calibrate", "false") is False
    assert coerce("data.max_train_samples", "none") is None
    assert coerce("run.report_to", "none") == "none"
    with pytest.raises(ConfigError, match="expected int"):
        coerce("training.batch_size", "many")
    with pytest.raises(ConfigError, match="expected bool"):
        coerce("training.calibrate", "maybe")
    with pytest.raises(ConfigError, match="expected int"):
        coerce("training.batch_size", 2.5)


def test_set_syntax_errors() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["training.seed"])
    with pytest.raises(ConfigError, match="unknown config key 'seed'"):
        parse_set(["seed=3"])


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = resolve(overrides={"model.name": "minilm", "training.epochs": 1.5})
    cfg.save(tmp_path / "config.yaml")
    again = from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == cfg
    assert "training.learning_rate" in valid_keys()


def test_saved_config_is_annotated_yet_loads_as_before(tmp_path: Path) -> None:
    cfg = resolve(
        overrides={"model.name": "minilm", "run.name": "a: b # c"},
        sets=["data.dir=/some where/imdb"],
    )
    cfg.save(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "# --set" in text and "# recipe:minilm" in text  # each value says where it came from
    assert yaml.safe_load(text) == cfg.to_dict()  # the comments change nothing
    assert set(cfg.to_dict()) == {"data", "model", "training", "run"}  # sources are not values
    assert resolve(tmp_path / "config.yaml") == cfg


def test_file_value_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"c.yaml: config key 'training.batch_size'"):
        resolve(path)
