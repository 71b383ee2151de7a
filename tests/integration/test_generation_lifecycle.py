"""text-generation through the CLI on a tiny causal LM built from a config: init on chat JSONL, fit, evaluate,
predict (answers), an update with a new intent through the paired gate, and a careless update (two intents'
answers swapped) that the gate refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.train.testing import chat_frame, chat_texts, make_tiny_causal_lm

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _write_chat(frame: pd.DataFrame, path: Path, swap: dict[str, str] | None = None) -> Path:
    lines = []
    for prompt, completion in zip(frame["prompt"], frame["completion"], strict=True):
        answer = json.loads(completion)
        if swap:
            answer["intent"] = swap.get(answer["intent"], answer["intent"])
        messages = json.loads(prompt) + [{"role": "assistant", "content": json.dumps(answer)}]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    model = make_tiny_causal_lm(root / "tiny-lm", chat_texts(), hidden=64)
    _write_chat(chat_frame(200, 1), root / "week1.jsonl")
    _write_chat(chat_frame(150, 2, ("refund", "track", "cancel")), root / "week2.jsonl")
    _write_chat(chat_frame(150, 5, ("refund", "track", "cancel")), root / "week2_bad.jsonl",
                swap={"refund": "track", "track": "refund"})
    _invoke("init", str(root / "week1.jsonl"), "--out", str(root / "keepfit.yaml"))
    config = (root / "keepfit.yaml").read_text()
    assert "task: text-generation" in config
    (root / "keepfit.yaml").write_text(config.replace("SmolLM2-135M-Instruct", str(model)))
    return root


def _cfg(project: Path) -> list[str]:
    return [
        "--config", str(project / "keepfit.yaml"),
        "--set", "train.strategy=full", "--set", "train.lr=3e-3", "--set", "train.epochs=40",
        "--set", "train.weight_decay=0", "--set", "train.precision=fp32", "--set", "train.threads=1",
        "--set", "update.epochs=20", "--set", "evaluate.bootstrap=200", "--set", "evaluate.max_new_tokens=16",
    ]


def test_generation_lifecycle(project: Path):
    out = _invoke("fit", *_cfg(project), "--quiet")
    assert "accuracy" in out
    out = _invoke("evaluate", "champion", *_cfg(project), "--out", str(project / "eval"))
    report = json.loads((project / "eval" / "evaluation.json").read_text())
    assert report["task"] == "text-generation"
    assert report["headline"]["eos_rate"] == 1.0 and report["headline"]["accuracy"] >= 0.8, report["headline"]
    assert "intent" in (project / "eval" / "report.html").read_text()  # the per-field table

    rows = pd.DataFrame({"prompt": ["the refund was a film", "where is the plot"]})
    rows.to_csv(project / "ask.csv", index=False)
    _invoke("predict", "champion", str(project / "ask.csv"), str(project / "answers.csv"), *_cfg(project))
    answers = pd.read_csv(project / "answers.csv")
    assert list(answers.columns) == ["prompt", "output", "ended"] and answers["ended"].all()

    out = _invoke("update", "--data", str(project / "week2.jsonl"), *_cfg(project))
    assert "Promoted version 2" in out, out  # the new intent learned, the old answers kept

    result = runner.invoke(app, ["update", "--data", str(project / "week2_bad.jsonl"), *_cfg(project),
                                 "--set", "update.distill=false", "--set", "update.replay_ratio=0"])
    assert "Rejected: version 3 stays challenger; champion is still version 2" in result.output, result.output
    assert "- max_negative_flip_rate" in result.output or "- non_inferiority" in result.output
