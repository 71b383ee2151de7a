"""`keepfit init`: task and column inference, the commented YAML, and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from keepfit.cli.app import app, main
from keepfit.config import load_config
from keepfit.data.infer import infer, infer_config, write_config_file
from keepfit.data.validate import load_and_validate
from keepfit.errors import ConfigError, DataError

INTENTS = ["card_arrival", "refund", "exchange_rate", "lost_card"]


def _intent_rows(n: int = 60) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "text": f"my question number {i} is about {INTENTS[i % 4].replace('_', ' ')} please help",
            "intent": INTENTS[i % 4],
            "customer_id": f"c{i // 3}",
            "created_at": f"2024-03-{1 + i % 28:02d}",
        }
        for i in range(n)
    ]


def _csv(tmp_path: Path, rows: list[dict], name: str = "d.csv") -> Path:
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_single_label_with_group_and_time(tmp_path: Path):
    config, notes = infer_config(_csv(tmp_path, _intent_rows()))
    d = config.data
    assert config.task == "single-label"
    assert (d.text_column, d.label_column, d.group_column, d.time_column) == (
        "text",
        "intent",
        "customer_id",
        "created_at",
    )
    assert config.labels is None
    assert any("longest texts" in n for n in notes) and any("4 distinct values" in n for n in notes)


def test_multilabel_joined_by_a_separator(tmp_path: Path):
    tags = ["billing|refund", "billing", "refund|app", "app", "billing|app", "refund"] * 10
    rows = [{"body": f"a fairly long message text number {i}", "tags": t} for i, t in enumerate(tags)]
    found = infer(_csv(tmp_path, rows))
    assert found.config.task == "multi-label"
    assert (found.config.data.text_column, found.config.data.label_column) == ("body", "tags")
    assert found.config.data.label_separator == "|"
    assert sorted(found.labels) == ["app", "billing", "refund"]


def test_multilabel_json_lists(tmp_path: Path):
    p = tmp_path / "d.jsonl"
    p.write_text(
        "".join(
            json.dumps({"text": f"some text {i}", "labels": ["a", "b"][: 1 + i % 2]}) + "\n"
            for i in range(30)
        )
    )
    config, _ = infer_config(p)
    assert config.task == "multi-label" and config.data.label_column == "labels"
    checked = load_and_validate(p, config)
    assert checked.kept["labels"].tolist()[:2] == [["a"], ["a", "b"]]


def test_regression_target(tmp_path: Path):
    rows = [{"review": f"the product was okay number {i}", "score": round(i * 0.37, 2)} for i in range(40)]
    config, notes = infer_config(_csv(tmp_path, rows))
    assert config.task == "regression" and config.data.target_column == "score"
    assert config.data.label_column is None
    assert any("regression" in n for n in notes)


def test_few_integer_ratings_are_classes_with_a_note(tmp_path: Path):
    rows = [{"review": f"the product was okay number {i}", "stars": 1 + i % 5} for i in range(40)]
    config, notes = infer_config(_csv(tmp_path, rows))
    assert config.task == "single-label" and config.data.label_column == "stars"
    assert any("task: regression" in n for n in notes)


def test_one_column_per_label(tmp_path: Path):
    rows = [
        {"comment": f"some comment text {i}", "toxic": i % 2, "obscene": (i // 2) % 2, "insult": 0}
        for i in range(30)
    ]
    config, _ = infer_config(_csv(tmp_path, rows))
    assert config.task == "multi-label"
    assert config.data.label_columns == ["toxic", "obscene", "insult"]
    assert config.data.label_column is None


def test_split_column_is_used_as_given(tmp_path: Path):
    rows = [dict(r, split=["train", "validation", "test"][i % 3]) for i, r in enumerate(_intent_rows())]
    config, _ = infer_config(_csv(tmp_path, rows))
    assert config.data.split_column == "split" and config.split.method == "given"


def test_explicit_columns_win(tmp_path: Path):
    config, _ = infer_config(_csv(tmp_path, _intent_rows()), text_column="id", label_column="customer_id")
    assert (config.data.text_column, config.data.label_column) == ("id", "customer_id")
    with pytest.raises(DataError, match="'nope' is not a column"):
        infer_config(_csv(tmp_path, _intent_rows()), label_column="nope")


def test_no_label_column_is_a_clear_error(tmp_path: Path):
    rows = [{"text": f"unique text {i}", "other": f"unique value {i}"} for i in range(30)]
    with pytest.raises(DataError, match="--label-column"):
        infer_config(_csv(tmp_path, rows))


def test_written_file_is_commented_loads_back_and_checks_the_data(tmp_path: Path):
    data = _csv(tmp_path, _intent_rows())
    found = infer(data)
    out = tmp_path / "project" / "keepfit.yaml"
    write_config_file(found.config, found.notes, out, label_names=found.labels)
    text = out.read_text()
    assert text.count("\n#") >= 10 and "# labels found in the sample (4" in text
    assert "# labels: [card_arrival" in text
    assert yaml.safe_load(text)["data"]["train"] == "../d.csv"
    loaded = load_config(out)
    assert loaded.task == found.config.task
    assert Path(loaded.data.train or "") == data.resolve()
    assert loaded.data.model_dump(exclude={"train"}) == found.config.data.model_dump(exclude={"train"})
    checked = load_and_validate(loaded.data.train or "", loaded)
    assert len(checked.kept) == 60 and checked.labels == sorted(INTENTS)
    assert [p.name for p in out.parent.iterdir()] == ["keepfit.yaml"]  # no temporary file left


def test_refuses_to_overwrite_without_force(tmp_path: Path):
    config, notes = infer_config(_csv(tmp_path, _intent_rows()))
    out = tmp_path / "keepfit.yaml"
    out.write_text("mine: true\n")
    with pytest.raises(ConfigError, match="--force"):
        write_config_file(config, notes, out)
    assert out.read_text() == "mine: true\n"
    write_config_file(config, notes, out, force=True)
    assert load_config(out).data.label_column == "intent"


def test_cli_init_writes_and_refuses(tmp_path: Path):
    data = _csv(tmp_path, _intent_rows())
    out = tmp_path / "keepfit.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "single-label" in result.output and "intent" in result.output
    assert load_config(out).data.label_column == "intent"
    again = runner.invoke(app, ["init", str(data), "--out", str(out)])
    assert again.exit_code != 0 and isinstance(again.exception, ConfigError)
    forced = runner.invoke(app, ["init", str(data), "--out", str(out), "--force", "--task", "single-label"])
    assert forced.exit_code == 0, forced.output


def test_main_turns_a_data_error_into_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    bad = tmp_path / "header_only.csv"
    bad.write_text("text,label\n")
    monkeypatch.setattr(sys, "argv", ["keepfit", "init", str(bad), "--out", str(tmp_path / "k.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == DataError.exit_code
    err = capsys.readouterr().err
    assert "DataError" in err and "no readable data rows" in err
    assert "Traceback" not in err
    assert not (tmp_path / "k.yaml").exists()


def test_a_label_column_with_one_value_is_chosen_by_name_with_a_warning(tmp_path):
    from keepfit.data.infer import infer_config

    path = tmp_path / "one.csv"
    path.write_text("text,label\nhello there,a\nworld peace,a\nfoo bar,a\n")
    config, notes = infer_config(path)
    assert config.task == "single-label" and config.data.label_column == "label"
    assert any("at least two labels" in note for note in notes)
