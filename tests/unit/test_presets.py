"""Presets: validated in keepfit.yaml, written back by `keepfit tune` (write_preset), applied by `keepfit fit
--preset` and reused by `keepfit update` of the champion that was tuned with one (its registry tag)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import keepfit.pipeline  # noqa: E402
from keepfit import config as config_module  # noqa: E402
from keepfit.cli.app import app  # noqa: E402
from keepfit.cli.fit import PRESET_HELP  # noqa: E402
from keepfit.config import apply_overrides, load_config  # noqa: E402
from keepfit.errors import ConfigError, DataError  # noqa: E402
from keepfit.registry import Lineage  # noqa: E402
from keepfit.train.presets import (  # noqa: E402
    PRESET_TAG,
    PRESETS,
    ChampionPreset,
    champion_preset,
    preset_overrides,
    write_preset,
)

TUNED = {"train.lr": 1e-5, "train.epochs": 3, "train.freeze_embeddings": False, "train.strategy": "lora"}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ validation


def test_every_bad_preset_is_reported_at_once(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", yaml.safe_dump({"presets": {
        "fast": {"train.epochs": 1},
        "mine": {"train.lrr": 0.1, "trian.epochs": 2, "train.lr": -1, "train.strategy": "bogus", "task": "x"},
    }}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 6, problems
    by_place = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_place) == {"presets.fast", "presets.mine.train.lrr", "presets.mine.trian.epochs",
                             "presets.mine.train.lr", "presets.mine.train.strategy", "presets.mine.task"}
    assert "taken by a built-in preset" in by_place["presets.fast"]
    assert "did you mean train.lr?" in by_place["presets.mine.train.lrr"]
    assert "did you mean train.epochs?" in by_place["presets.mine.trian.epochs"]
    assert "greater than 0" in by_place["presets.mine.train.lr"] and "(got -1)" in by_place["presets.mine.train.lr"]
    assert "'head', 'full', 'lora' or 'fewshot'" in by_place["presets.mine.train.strategy"]
    assert "expected a key section.setting" in by_place["presets.mine.task"]


def test_a_valid_preset_loads_as_written(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", "presets:\n  tuned:\n    train.lr: 0.0001\n    split.test: 0.2\n")
    cfg = load_config(path)
    assert cfg.presets == {"tuned": {"train.lr": 0.0001, "split.test": 0.2}}
    assert cfg.train.lr == 1e-4 and cfg.split.test == 0.1  # defined, not applied


def test_reserved_names_are_the_builtin_presets_and_none():
    assert set(config_module._RESERVED_PRESET_NAMES) == {*PRESETS, "none"}
    assert all(f"{name} (" in PRESET_HELP for name in PRESETS)


# ------------------------------------------------------------------ preset_overrides


def test_overrides_read_back_with_their_types():
    values = {**TUNED, "train.head_lr": 2.5e-7, "data.text_column": "yes", "train.dropout": None,
              "data.slice_columns": ["region", "on"]}
    raw = apply_overrides({}, preset_overrides("tuned", {"tuned": values}))
    flat = {f"{section}.{key}": value for section, settings in raw.items() for key, value in settings.items()}
    assert flat == values
    assert {key: type(value) for key, value in flat.items()} == {key: type(value) for key, value in values.items()}


def test_file_presets_come_first_then_the_builtin_ones():
    assert preset_overrides("fast", {"fast": {"train.epochs": 9}}) == ["train.epochs=9"]
    assert load_config(None, preset_overrides("best", {"tuned": TUNED})).train.epochs == PRESETS["best"][
        "train.epochs"]
    assert preset_overrides(None, {"tuned": TUNED}) == []


def test_unknown_preset_names_both_kinds():
    with pytest.raises(ConfigError) as info:
        preset_overrides("tunned", {"tuned": TUNED, "other": {}})
    message = str(info.value)
    assert "'tunned'" in message and "fast, best" in message and "tuned, other" in message
    with pytest.raises(ConfigError, match="it defines none"):
        preset_overrides("fastest")


# ------------------------------------------------------------------ write_preset

COMMENTED = """\
# keepfit.yaml of the support project
task: single-label  # one label per text
train:
  lr: 0.001  # tried by hand
  epochs: 2
registry:
  model_name: support
"""


def test_write_preset_keeps_a_file_with_comments_as_written(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", COMMENTED)
    assert write_preset(path, "tuned-abc", TUNED) == path
    text = path.read_text(encoding="utf-8")
    assert text.startswith(COMMENTED)
    cfg = load_config(path)
    assert cfg.presets == {"tuned-abc": TUNED}
    assert isinstance(cfg.presets["tuned-abc"]["train.lr"], float)
    applied = load_config(path, preset_overrides("tuned-abc", cfg.presets))
    assert (applied.train.lr, applied.train.epochs, applied.train.strategy) == (1e-5, 3, "lora")
    assert applied.train.freeze_embeddings is False
    assert load_config(path).train.lr == 0.001  # the file's own settings are unchanged


WITH_PRESETS = """\
# header
train:
  epochs: 2
presets:
  # inside the block: lost when it is rewritten
  other:
    train.lr: 0.01
  tuned-abc: {train.lr: 0.5}
# about the gate
gate:
  margin: 0.03  # looser than the default
"""


def test_write_preset_replaces_one_preset_and_keeps_the_others(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", WITH_PRESETS)
    write_preset(path, "tuned-abc", TUNED)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# header\ntrain:\n  epochs: 2\n")
    assert text.endswith("# about the gate\ngate:\n  margin: 0.03  # looser than the default\n")
    cfg = load_config(path)
    assert list(cfg.presets) == ["other", "tuned-abc"]
    assert cfg.presets == {"other": {"train.lr": 0.01}, "tuned-abc": TUNED}
    assert cfg.gate.margin == 0.03 and cfg.train.epochs == 2
    write_preset(path, "second", {"train.lr": 3e-4})
    assert list(load_config(path).presets) == ["other", "tuned-abc", "second"]


def test_write_preset_creates_a_missing_file(tmp_path):
    path = tmp_path / "new" / "keepfit.yaml"
    write_preset(path, "tuned", {"train.lr": np.float64(1e-5), "train.epochs": np.int64(2)})  # as a search gives
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {"presets": {"tuned": {"train.lr": 1e-5,
                                                                                     "train.epochs": 2}}}
    assert load_config(path, preset_overrides("tuned", load_config(path).presets)).train.lr == 1e-5


def test_write_preset_refuses_a_bad_preset_and_leaves_the_file(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", COMMENTED)
    with pytest.raises(ConfigError, match="did you mean train.lr"):
        write_preset(path, "tuned", {"train.lrr": 1e-5})
    with pytest.raises(ConfigError, match="taken by a built-in preset"):
        write_preset(path, "best", TUNED)
    assert path.read_text(encoding="utf-8") == COMMENTED


def test_write_preset_rewrites_a_flow_style_file_whole(tmp_path):
    path = _write(tmp_path / "keepfit.yaml", "{train: {epochs: 2}}\n")
    write_preset(path, "tuned", TUNED)
    cfg = load_config(path)
    assert cfg.train.epochs == 2 and cfg.presets == {"tuned": TUNED}


# ------------------------------------------------------------------ keepfit fit --preset


def test_fit_applies_a_preset_of_the_config_file_before_set(tmp_path, monkeypatch):
    path = _write(tmp_path / "keepfit.yaml", COMMENTED)
    write_preset(path, "tuned-abc", TUNED)
    seen = []

    def fake_fit(cfg, **kwargs):
        seen.append(cfg)
        return SimpleNamespace(train=None, metrics={}, model_dir="model", report="report.html", version=None)

    monkeypatch.setattr(keepfit.pipeline, "fit", fake_fit)
    result = CliRunner().invoke(app, ["fit", "-c", str(path), "--preset", "tuned-abc", "--set", "train.epochs=7"])
    assert result.exit_code == 0, result.output
    (cfg,) = seen
    assert (cfg.train.lr, cfg.train.strategy, cfg.train.freeze_embeddings) == (1e-5, "lora", False)
    assert cfg.train.epochs == 7  # --set wins over the preset's 3

    result = CliRunner().invoke(app, ["fit", "-c", str(path), "--preset", "tunned"])
    assert isinstance(result.exception, ConfigError) and "tuned-abc" in str(result.exception)
    assert len(seen) == 1


# ------------------------------------------------------------------ keepfit update reuses the champion's preset


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    (folder / "model.safetensors").write_bytes(b"\x00\x01" * 64)
    return folder


def _lineage() -> Lineage:
    return Lineage(data_snapshot="snap-aaaa", parent_version=None, config_hash="cfg0123456789abc",
                   code_version="0.1.0", task="single-label", labels=["a", "b"])


@pytest.fixture(scope="module")
def tuned_project(tmp_path_factory) -> Path:
    """A project whose champion v1 was registered by a tune with preset tuned-abc; returns its keepfit.yaml."""
    from keepfit.registry import Registry

    root = tmp_path_factory.mktemp("project")
    path = _write(root / "keepfit.yaml", COMMENTED)
    write_preset(path, "tuned-abc", TUNED)
    write_preset(path, "other", {"train.lr": 3e-4, "train.epochs": 5})
    Registry.open(load_config(path)).register(
        _fake_model(root / "model"), metrics={"accuracy": 0.9}, lineage=_lineage(), alias="champion",
        tags={PRESET_TAG: "tuned-abc"},
    )
    return path


def test_champion_preset_reads_the_registry_tag(tuned_project):
    assert champion_preset(load_config(tuned_project)) == ChampionPreset(version="1", name="tuned-abc")


def test_champion_preset_without_a_registry_creates_nothing(tmp_path):
    cfg = load_config(_write(tmp_path / "keepfit.yaml", COMMENTED))
    assert champion_preset(cfg) is None
    assert not (tmp_path / ".keepfit").exists()


def test_champion_preset_of_a_champion_without_the_tag_is_none(tmp_path):
    from keepfit.registry import Registry

    cfg = load_config(_write(tmp_path / "keepfit.yaml", COMMENTED))
    registry = Registry.open(cfg)
    assert champion_preset(cfg) is None  # a registry, no champion
    registry.register(_fake_model(tmp_path / "model"), metrics={}, lineage=_lineage(), alias="champion")
    assert champion_preset(cfg) is None


@pytest.fixture
def update_with(monkeypatch):
    """``update_with(*args)`` -> (config the update got, output) of `keepfit update --data new.csv *args`."""

    def invoke(*args: str):
        seen = []

        def fake_update(cfg, data, **kwargs):
            seen.append(cfg)
            raise DataError("stop here: the test only needs the config")

        monkeypatch.setattr(keepfit.pipeline, "update", fake_update)
        result = CliRunner().invoke(app, ["update", "--data", "new.csv", *args])
        assert isinstance(result.exception, DataError), result.output
        return seen[0], " ".join(result.output.split())

    return invoke


def test_update_reuses_the_champions_preset_before_set(tuned_project, update_with):
    cfg, out = update_with("-c", str(tuned_project), "--set", "train.epochs=4")
    assert (cfg.train.lr, cfg.train.strategy, cfg.train.freeze_embeddings) == (1e-5, "lora", False)
    assert cfg.train.epochs == 4  # --set wins over the preset's 3
    assert ("update reuses the tuned configuration of champion v1: preset tuned-abc (train.lr=1.0e-05, "
            "train.epochs=3, train.freeze_embeddings=false, train.strategy=lora)") in out


def test_update_preset_none_and_another_preset(tuned_project, update_with):
    cfg, out = update_with("-c", str(tuned_project), "--preset", "none")
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.strategy) == (0.001, 2, "full") and "preset" not in out
    cfg, out = update_with("-c", str(tuned_project), "--preset", "other")
    assert (cfg.train.lr, cfg.train.epochs) == (3e-4, 5)
    assert "update applies preset other (train.lr=0.0003, train.epochs=5)" in out


def test_update_warns_when_the_champions_preset_is_gone(tuned_project, tmp_path, update_with):
    bare = _write(tmp_path / "keepfit.yaml", COMMENTED + f"store: {tuned_project.parent / '.keepfit'}\n")
    cfg, out = update_with("-c", str(bare))
    assert (cfg.train.lr, cfg.train.epochs) == (0.001, 2)
    assert "warning: champion v1 was trained with preset tuned-abc, which the config file no longer defines" in out
