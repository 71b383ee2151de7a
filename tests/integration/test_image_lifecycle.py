"""image-classification through the CLI on a tiny CNN built from a config: init on an image folder (planted bad
files quarantined), fit, evaluate (the report's most confused classes with thumbnails), predict a folder, an
update with a new class through the paired gate, and a careless update (two classes' labels swapped) that the
gate refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from keepfit.cli import app
from keepfit.train.testing import make_tiny_image_model

runner = CliRunner()

# each class is a colour and a shape the tiny CNN can tell apart in a few epochs
_CLASSES = {"red": ((220, 40, 40), "disc"), "green": ((40, 200, 60), "square"), "blue": ((40, 60, 220), "bar"),
            "yellow": ((230, 220, 40), "disc")}


def _draw(label: str, rng: np.random.Generator) -> Image.Image:
    colour, shape = _CLASSES[label]
    back = tuple(int(v) for v in rng.integers(90, 160, size=3))
    img = Image.new("RGB", (40, 40), back)
    draw = ImageDraw.Draw(img)
    x, y, r = int(rng.integers(8, 20)), int(rng.integers(8, 20)), int(rng.integers(9, 14))
    tint = tuple(int(np.clip(c + rng.integers(-25, 25), 0, 255)) for c in colour)
    if shape == "disc":
        draw.ellipse((x, y, x + 2 * r, y + 2 * r), fill=tint)
    elif shape == "square":
        draw.rectangle((x, y, x + 2 * r, y + 2 * r), fill=tint)
    else:
        draw.rectangle((x, 2, x + r, 38), fill=tint)
    noise = rng.integers(-12, 12, size=(40, 40, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=int) + noise, 0, 255).astype(np.uint8))


def _folder(root: Path, per_class: dict[str, int], seed: int, swap: dict[str, str] | None = None) -> Path:
    rng = np.random.default_rng(seed)
    for label, n in per_class.items():
        shown = (swap or {}).get(label, label)
        (root / shown).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _draw(label, rng).save(root / shown / f"{label}_{seed}_{i:03d}.png")
    return root


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("img")
    model = make_tiny_image_model(root / "tiny-cnn")
    week1 = _folder(root / "week1", {"red": 40, "green": 40, "blue": 40}, seed=1)
    (week1 / "red" / "broken.jpg").write_bytes(b"not an image at all")  # quarantined as not_an_image
    (week1 / "green" / "empty.png").write_bytes(b"")  # quarantined as empty_file
    _folder(root / "week2", {"red": 25, "green": 25, "blue": 25, "yellow": 40}, seed=2)
    _folder(root / "careless", {"red": 80, "green": 80, "blue": 20}, seed=3, swap={"red": "green", "green": "red"})
    _invoke("init", str(week1), "--out", str(root / "keepfit.yaml"))
    config = (root / "keepfit.yaml").read_text()
    assert "task: image-classification" in config
    (root / "keepfit.yaml").write_text(config.replace("efficientnet-lite0", str(model)))
    return root


def _cfg(project: Path) -> list[str]:
    return [
        "--config", str(project / "keepfit.yaml"),
        "--set", "model.image_size=32", "--set", "train.epochs=12", "--set", "train.lr=3e-3",
        "--set", "train.batch_size=16", "--set", "train.threads=1", "--set", "train.workers=0",
        "--set", "train.augment.rotation=0", "--set", "update.epochs=8", "--set", "evaluate.bootstrap=200",
        "--set", "split.validation=0.15", "--set", "split.test=0.25",
    ]


def test_image_lifecycle(project: Path):
    out = _invoke("data", "check", str(project / "week1"), *_cfg(project))
    assert "not_an_image" in out and "empty_file" in out, out

    _invoke("fit", *_cfg(project), "--quiet")
    _invoke("evaluate", "champion", *_cfg(project), "--out", str(project / "eval"))
    report = json.loads((project / "eval" / "evaluation.json").read_text())
    assert report["task"] == "image-classification"
    assert report["headline"]["accuracy"] >= 0.8, report["headline"]
    html = (project / "eval" / "report.html").read_text()
    assert "data:image/jpeg;base64," in html or report["headline"]["accuracy"] == 1.0

    _invoke("predict", "champion", str(project / "week2" / "yellow"), str(project / "pred.csv"), *_cfg(project))
    preds = pd.read_csv(project / "pred.csv")
    assert len(preds) == 40 and set(preds["label"]) <= {"red", "green", "blue"}  # not known yet

    out = _invoke("update", "--data", str(project / "week2"), *_cfg(project))
    assert "Promoted version 2" in out, out  # the new class learned, the old ones kept

    result = runner.invoke(app, ["update", "--data", str(project / "careless"), *_cfg(project),
                                 "--set", "update.distill=false", "--set", "update.replay_ratio=0",
                                 "--set", "update.screen=keep",  # the screen would set the swapped rows aside
                                 "--set", "update.lr=1e-2", "--set", "update.epochs=1"])
    assert "Rejected: version 3 stays challenger; champion is still version 2" in result.output, result.output
