"""`keepfit adapt` on a tiny BERT: whole-word seeded masks, the held-out MLM loss falls, a run killed with SIGKILL
resumes to an uninterrupted run's weights bitwise, and `fit` starts from the adapted folder with mean pooling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from keepfit.config import KeepfitConfig
from keepfit.train.adapt import ADAPT_META, MLM_HEAD_FILE, adapt, mlm_batch, mlm_collator, mlm_tokens
from keepfit.train.model import load_tokenizer, resolve_pooling
from keepfit.train.testing import config_for, make_tiny_model, sentiment_frame, snapshot_of

QUICK = {"threads": 1, "precision": "fp32", "checkpoint_every_steps": 5}


def _config(model: Path, store: Path, **adapt_settings) -> KeepfitConfig:
    settings = {"epochs": 3, "lr": 2e-3, "batch_size": 16, "held_out": 0.1, **adapt_settings}
    return KeepfitConfig.model_validate(
        {"model": {"name": str(model)}, "store": str(store), "train": QUICK, "adapt": settings}
    )


@pytest.fixture(scope="module")
def pooled_model(tmp_path_factory) -> Path:
    """A tiny BERT declaring mean pooling (as all-MiniLM-L6-v2 does), without an MLM head (as it has none)."""
    from keepfit.train.testing import all_texts

    return make_tiny_model(tmp_path_factory.mktemp("pooled") / "model", all_texts(), mean_pooling=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A repetitive in-domain text: 300 lines of the sentiment task's words, and two empty lines."""
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    lines = sentiment_frame(300, 5)["text"].tolist()
    path.write_text("\n".join(lines[:150] + ["", "   "] + lines[150:]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def adapted(pooled_model, corpus, tmp_path_factory):
    return adapt(_config(pooled_model, tmp_path_factory.mktemp("store")), corpus, progress=False)


def test_masks_are_whole_words_and_seeded(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    texts = ["reallygreat storyplot was awfulsad", "the filmmovie quiteplain okay", "lovenice plotstory"] * 4
    tokens = mlm_tokens(tokenizer, texts, 64)
    words = [tokenizer(t).word_ids() for t in texts]
    assert any(len([w for w in ws if w == k]) > 1 for ws in words for k in set(ws) if k is not None)
    collator, rows = mlm_collator(tokenizer, 0.5, whole_word=True), np.arange(len(texts))

    inputs, targets = mlm_batch(collator, tokens, rows, tokenizer.pad_token_id, seed=7)
    again, same_targets = mlm_batch(collator, tokens, rows, tokenizer.pad_token_id, seed=7)
    other, _ = mlm_batch(collator, tokens, rows, tokenizer.pad_token_id, seed=8)
    assert torch.equal(inputs["masked"], again["masked"]) and torch.equal(targets, same_targets)
    assert not torch.equal(inputs["masked"], other["masked"])

    masked = inputs["masked"]
    assert 0 < int(masked.sum()) < int(inputs["attention_mask"].sum())
    for i, word_ids in enumerate(words):
        for k in {w for w in word_ids if w is not None}:
            states = {bool(masked[i, p]) for p, w in enumerate(word_ids) if w == k}
            assert len(states) == 1, (texts[i], k)  # every token of a word masked together, or none
        assert not masked[i, 0] and not masked[i, len(word_ids) - 1]  # [CLS] and [SEP] never
    original = torch.tensor([tokens.ids[i][p] for i, p in masked.nonzero().tolist()])
    assert torch.equal(targets, original)
    assert (inputs["input_ids"][masked] == tokenizer.mask_token_id).all()


def test_held_out_loss_goes_down_and_the_folder_says_so(adapted):
    assert adapted.head_loaded is False  # the tiny model, like all-MiniLM-L6-v2, ships no MLM head
    assert adapted.train_rows == 270 and adapted.held_out_rows == 30 and adapted.skipped_rows == 2
    assert adapted.held_out_loss_after < adapted.held_out_loss_before - 0.5
    losses = [row["validation_loss"] for row in adapted.history]
    assert adapted.held_out_loss_after == min(losses) and losses[-1] < losses[0]
    meta = json.loads((adapted.model_dir / ADAPT_META).read_text())
    assert meta["steps"] == adapted.steps == 3 * 17
    assert meta["held_out_loss_before"] == adapted.held_out_loss_before
    assert meta["text_sha256"] == adapted.text_sha256 and meta["whole_word_mask"] is True
    assert "Held-out masked-token loss" in (adapted.model_dir / "README.md").read_text()
    assert adapted.next_setting == f"model.name={adapted.model_dir}"


def test_fit_starts_from_the_adapted_folder_with_mean_pooling(adapted, pooled_model, tmp_path):
    from keepfit.train import train_model

    folder = adapted.model_dir
    assert not (folder / "keepfit.json").exists()  # `fit` must read it as a plain encoder, not a keepfit model
    assert resolve_pooling(folder) == "mean"
    base, tuned = load_file(str(pooled_model / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    assert base.keys() == tuned.keys()  # the same plain encoder, pooler included
    assert not torch.equal(base["encoder.layer.0.attention.self.query.weight"],
                           tuned["encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(base["pooler.dense.weight"], tuned["pooler.dense.weight"])  # MLM never trains it

    snap = snapshot_of(sentiment_frame(200, 1), sentiment_frame(60, 2), sentiment_frame(60, 3))
    result = train_model(snap, config_for(folder, epochs=4), tmp_path / "run", progress=False)
    meta = json.loads((result.model_dir / "keepfit.json").read_text())
    assert meta["pooling"] == "mean" and meta["model_path"] == str(folder)
    assert result.best_metric >= 0.9


def test_adapting_an_adapted_folder_continues_its_head(adapted, corpus, tmp_path):
    again = adapt(_config(adapted.model_dir, tmp_path / "store", epochs=1), corpus, out=tmp_path / "again",
                  progress=False)
    assert again.head_loaded is True
    # same text, seed and held-out masks: the exported weights score what the first run's best weights scored
    assert again.held_out_loss_before == pytest.approx(adapted.held_out_loss_after, abs=1e-5)
    assert (tmp_path / "again" / MLM_HEAD_FILE).exists()


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from keepfit.config import KeepfitConfig
from keepfit.train.adapt import adapt

model, text, store, mode = sys.argv[1:5]
config = KeepfitConfig.model_validate({
    "model": {"name": model}, "store": store,
    "train": {"threads": 1, "precision": "fp32", "checkpoint_every_steps": 5},
    "adapt": {"epochs": 3, "lr": 2e-3, "batch_size": 16, "held_out": 0.1, "evals_per_epoch": 4},
})

def hook(row):
    if mode == "kill" and row["step"] >= 22:  # mid-epoch 2: the evaluation at step 25, before its checkpoint
        os.kill(os.getpid(), signal.SIGKILL)

resume = next(Path(store, "adapted").iterdir()) if mode == "resume" else None
adapt(config, None if resume else text, resume=resume, progress=False, on_eval=hook)
"""


def _run(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_resume_after_sigkill_is_bitwise_identical(pooled_model, corpus, tmp_path):
    script = tmp_path / "adapt.py"
    script.write_text(KILL_SCRIPT)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = _run(script, str(pooled_model), str(corpus), str(straight), "plain")
    assert done.returncode == 0, done.stderr[-2000:]

    done = _run(script, str(pooled_model), str(corpus), str(killed), "kill")
    assert done.returncode == -9, done.stderr[-2000:]
    run = next((killed / "adapted").iterdir())
    assert not (run / "model").exists()  # nothing half-written: the folder appears whole or not at all
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-00000020-e1-b3"]

    done = _run(script, str(pooled_model), str(corpus), str(killed), "resume")  # no --text: the run's own
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in (run / "train.log").read_text()

    a_run = next((straight / "adapted").iterdir())
    for name in ("model.safetensors", MLM_HEAD_FILE):
        a, b = load_file(str(a_run / "model" / name)), load_file(str(run / "model" / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    a_meta = json.loads((a_run / "model" / ADAPT_META).read_text())
    b_meta = json.loads((run / "model" / ADAPT_META).read_text())
    assert a_meta["held_out_loss_before"] == b_meta["held_out_loss_before"]
    assert a_meta["held_out_loss_after"] == b_meta["held_out_loss_after"]
