"""ONNX export: fp32 logits equal torch's for both heads, int8 is smaller and agrees, exports are reused and
survive a race, parity counts flips, and `keepfit export` prints the figures and refuses unknown formats."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from keepfit.errors import MissingExtraError, ModelError
from keepfit.train import Predictions, Predictor
from keepfit.train.export import export_model
from keepfit.train.model import load_model, load_tokenizer
from keepfit.train.onnx_export import (
    INT8_FILE,
    MANIFEST,
    OnnxPredictor,
    ensure_onnx,
    export_onnx,
    parity,
)
from keepfit.train.testing import all_texts, make_tiny_model, sentiment_frame

LABELS = ["neg", "pos", "neu"]
TEXTS = [
    "great",
    "the movie was really quite awful",
    "",
    "a film story plot " * 40,  # longer than max_length: truncated alike by both backends
    "so-so plain average fine okay it was",
    "love",
]


def _keepfit_folder(root: Path, *, mean_pooling: bool) -> Path:
    """A keepfit model folder with a saved (random) head, so every load of it gives the same logits."""
    base = make_tiny_model(root / "base", all_texts(), mean_pooling=mean_pooling)
    model = load_model(base, "single-label", LABELS)
    pooling = "mean" if mean_pooling else "cls"
    meta = {"task": "single-label", "labels": LABELS, "pooling": pooling, "max_length": 48}
    return export_model(model, load_tokenizer(base), root / "model", meta, card="")


@pytest.fixture(scope="module", params=["cls", "mean"])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    folder = _keepfit_folder(root, mean_pooling=request.param == "mean")
    return folder, export_onnx(folder, root / "onnx", int8=request.param == "cls")


def test_fp32_graph_gives_torch_logits_for_any_batch(exported):
    folder, export = exported
    torch_side = Predictor(folder, precision="fp32")
    onnx_side = OnnxPredictor(folder, export.fp32_path, threads=1)
    assert onnx_side.model is None, "the ONNX predictor must not hold the torch weights"
    for batch_size in (1, 4, 64):
        np.testing.assert_allclose(
            onnx_side.logits(TEXTS, batch_size).numpy(), torch_side.logits(TEXTS, batch_size).numpy(), atol=1e-4
        )
    np.testing.assert_allclose(onnx_side.logits(["great"]).numpy(), torch_side.logits(["great"]).numpy(), atol=1e-4)
    assert onnx_side.logits([]).shape == (0, len(LABELS))
    assert onnx_side.predict([]).outputs.shape == torch_side.predict([]).outputs.shape == (0, len(LABELS))
    assert onnx_side.predict(TEXTS).top_k_labels == torch_side.predict(TEXTS).top_k_labels


def test_manifest_names_the_source_and_the_sizes(exported):
    folder, export = exported
    manifest = json.loads((export.out_dir / MANIFEST).read_text())
    assert manifest["opset"] == export.opset >= 13
    assert manifest["source"]["path"] == str(folder.resolve())
    assert manifest["files"]["fp32"]["bytes"] == export.fp32_path.stat().st_size
    assert export.fp32_max_abs_diff <= 1e-4


@pytest.fixture(scope="module")
def trained_export(trained, tmp_path_factory):
    return export_onnx(trained.model_dir, tmp_path_factory.mktemp("trained") / "onnx", int8=True)


def test_int8_is_smaller_and_agrees_with_torch_on_a_trained_model(trained, trained_export):
    import onnx

    assert trained_export.int8_mb < trained_export.fp32_mb  # a tiny graph is mostly structure; MiniLM: 91 -> 59 MB
    graph = onnx.load(str(trained_export.int8_path)).graph
    weights = {w.name for w in graph.initializer}
    float_weight_products = [n.name for n in graph.node if n.op_type == "MatMul" and weights & set(n.input)]
    assert float_weight_products == [], "every product with a weight matrix runs on int8 weights"
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) >= 12  # 6 per layer: q, k, v, out, 2 x FFN
    frame = sentiment_frame(200, seed=11)
    report = parity(
        Predictor(trained.model_dir, precision="fp32"),
        OnnxPredictor(trained.model_dir, trained_export.int8_path, threads=1),
        frame["text"].tolist(),
        frame["label"].tolist(),
    )
    assert report.rows == 200
    assert report.agreement >= 0.95
    assert report.negative_flip_rate <= 0.03
    assert report.reference_accuracy > 0.9, "the trained tiny model learned the easy task"
    assert abs(report.other_accuracy - report.reference_accuracy) <= 0.03


class _Fixed:
    """A predictor stand-in with fixed probabilities (parity reads only task, labels and predict)."""

    task = "single-label"
    labels = ["a", "b"]

    def __init__(self, top: list[int]) -> None:
        self.outputs = np.eye(2)[top] * 0.8 + 0.1

    def predict(self, texts, batch_size=64, top_k=5) -> Predictions:
        return Predictions(self.task, self.labels, self.outputs, 1.0)


def test_parity_counts_negative_and_positive_flips():
    truth = ["a", "b", "a", "a", "b"]
    reference = _Fixed([0, 1, 1, 0, 0])  # right on rows 0, 1, 3
    other = _Fixed([0, 0, 1, 1, 1])  # right on rows 0, 4
    report = parity(reference, other, ["t"] * 5, truth)
    assert report.agreement == pytest.approx(2 / 5)
    assert (report.negative_flips, report.positive_flips) == (2, 1)
    assert report.negative_flip_rate == pytest.approx(2 / 5)
    assert (report.reference_accuracy, report.other_accuracy) == (pytest.approx(3 / 5), pytest.approx(2 / 5))
    assert report.max_abs_prob_diff == pytest.approx(0.8)
    assert parity(reference, other, ["t"] * 5).negative_flips is None  # no labels: agreement only


def test_ensure_onnx_reuses_an_export_of_the_same_files(exported, monkeypatch):
    folder, export = exported
    import keepfit.train.onnx_export as onnx_export

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although a complete export of the same files was there")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "_export_into", no_export)
        assert ensure_onnx(folder, export.out_dir, int8=False) == export.fp32_path
        if export.int8_path is not None:
            assert ensure_onnx(folder, export.out_dir, int8=True) == export.int8_path


def test_ensure_onnx_replaces_an_export_of_other_weights_and_adds_int8(tmp_path):
    folder = _keepfit_folder(tmp_path, mean_pooling=False)
    out = tmp_path / "onnx"
    first = ensure_onnx(folder, out, int8=False)
    assert not (out / INT8_FILE).exists()
    assert ensure_onnx(folder, out, int8=True) == out / INT8_FILE  # fp32-only export: made again with int8
    old = json.loads((out / MANIFEST).read_text())["source"]["sha256"]
    (folder / "README.md").write_text("changed")
    assert ensure_onnx(folder, out, int8=False) == first
    assert json.loads((out / MANIFEST).read_text())["source"]["sha256"] != old


def test_ensure_onnx_reuses_the_export_of_a_process_that_finished_first(tmp_path, monkeypatch):
    import keepfit.train.onnx_export as onnx_export

    folder = _keepfit_folder(tmp_path, mean_pooling=False)
    out = tmp_path / "onnx"
    real = onnx_export._export_into
    calls: list[Path] = []

    def racing(model_dir, folder_tmp, **kwargs):
        calls.append(folder_tmp)
        if len(calls) == 1:  # another process renames its finished export into place while this one works
            export_onnx(model_dir, out)
        return real(model_dir, folder_tmp, **kwargs)

    monkeypatch.setattr(onnx_export, "_export_into", racing)
    winner_manifest = None
    path = ensure_onnx(folder, out, int8=False)
    winner_manifest = json.loads((out / MANIFEST).read_text())
    assert path == out / "model.onnx" and path.is_file()
    assert len(calls) == 2, "both processes exported; the second must keep the first's folder, not fail"
    assert winner_manifest["source"]["sha256"] == onnx_export.folder_digest(folder)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".onnx")] == []  # no half-made folders left


def test_onnx_predictor_refuses_a_graph_of_another_model(trained, exported):
    _, export = exported  # 3 labels; the trained model has 2
    with pytest.raises(ModelError, match="does not fit"):
        OnnxPredictor(trained.model_dir, export.fp32_path, threads=1)
    with pytest.raises(ModelError, match="does not exist"):
        OnnxPredictor(trained.model_dir, export.out_dir / "missing.onnx", threads=1)


def test_missing_onnxruntime_names_the_extra(trained, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"keepfit\[export\]"):
        export_onnx(trained.model_dir, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_cli_export_of_a_folder_prints_parity_and_writes_it(trained, tmp_path, monkeypatch):
    from keepfit.cli import app

    monkeypatch.chdir(tmp_path)
    frame = sentiment_frame(80, seed=21)
    frame.to_csv(tmp_path / "texts.csv", index=False)
    copy = shutil.copytree(trained.model_dir, tmp_path / "model")
    result = CliRunner().invoke(
        app, ["export", str(copy), "--int8", "--texts", str(tmp_path / "texts.csv"), "--threads", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "model-onnx"
    for line in ("agreement with pytorch", "negative flips", "file size (MB)", "ms per text, batch 1",
                 "texts/s, batch 32"):
        assert line in result.output, result.output
    report = json.loads((out / "parity.json").read_text())
    assert [b["name"] for b in report["backends"]] == ["pytorch fp32", "onnx fp32", "onnx int8"]
    fp32 = report["backends"][1]["parity"]
    assert report["rows"] == 80 and fp32["agreement"] == 1.0 and fp32["negative_flips"] == 0
    assert report["backends"][2]["size_mb"] < report["backends"][1]["size_mb"]


def test_cli_export_refuses_an_unknown_format(monkeypatch, tmp_path, capsys):
    from keepfit.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["keepfit", "export", "champion", "--format", "tflite"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "'tflite' is not supported" in err and "expected one of onnx" in err


def test_torch_threads_are_left_alone_by_the_onnx_predictor(exported):
    folder, export = exported
    before = torch.get_num_threads()
    OnnxPredictor(folder, export.fp32_path, threads=before + 1)
    assert torch.get_num_threads() == before
