from pathlib import Path

import pytest
import yaml

from keepfit.config import (
    KeepfitConfig,
    apply_overrides,
    config_hash,
    load_config,
    save_config,
)
from keepfit.errors import ConfigError


def test_defaults_are_valid_and_documented():
    cfg = KeepfitConfig()
    assert cfg.task == "single-label"
    assert cfg.model.name == "all-MiniLM-L6-v2"
    assert cfg.split.validation + cfg.split.test < 1


def test_every_problem_is_reported_at_once(tmp_path: Path):
    path = tmp_path / "keepfit.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "train": {"lr": -1, "epochs": 0, "optimiser": "adam"},
                "split": {"validation": 0.6, "test": 0.6},
                "task": "clustering",
            }
        )
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) >= 4, problems
    assert "train.lr" in text and "train.epochs" in text
    assert "train.optimiser" in text and "unknown setting" in text
    assert "task" in text


def test_cross_field_rules_name_the_fix():
    with pytest.raises(ConfigError, match="target_column"):
        load_config(None, ["task=regression"])
    with pytest.raises(ConfigError, match="group_column"):
        load_config(None, ["split.method=group"])


def test_overrides_are_parsed_as_yaml_and_validated():
    cfg = load_config(None, ["train.lr=3e-5", "train.strategy=lora", "data.slice_columns=[channel, region]"])
    assert cfg.train.lr == pytest.approx(3e-5)
    assert cfg.train.strategy == "lora"
    assert cfg.data.slice_columns == ["channel", "region"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(None, ["train.batch_size=many"])


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path):
    sub = tmp_path / "proj"
    sub.mkdir()
    (sub / "keepfit.yaml").write_text("data:\n  train: data/week1.csv\n")
    cfg = load_config(sub / "keepfit.yaml")
    assert Path(cfg.data.train) == (sub / "data" / "week1.csv").resolve()
    assert Path(cfg.store) == (sub / ".keepfit").resolve()


def test_saved_config_loads_back_identically(tmp_path: Path):
    cfg = load_config(None, ["train.lr=2e-4", "labels=[a, b]"])
    path = save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(path)
    assert again.train.lr == cfg.train.lr and again.labels == ["a", "b"]
    assert config_hash(again.model_copy(update={"store": cfg.store})) == config_hash(cfg)


def test_missing_and_malformed_files_are_clear(tmp_path: Path):
    with pytest.raises(ConfigError, match="keepfit init"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)
