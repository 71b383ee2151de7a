"""Supervised fine-tuning of a causal LM in keepfit's loop: what is supervised, packing, distillation, resume,
and the exported folder that plain transformers loads and that answers exactly as keepfit does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from keepfit.config import KeepfitConfig
from keepfit.errors import DataError
from keepfit.train.causal import (
    IGNORE,
    causal_loss,
    distill_loss,
    encode_example,
    generate_answers,
    load_causal_model,
    load_causal_tokenizer,
    messages_of,
    pack_examples,
    resolve_causal_model,
)
from keepfit.train.generator import load_generator
from keepfit.train.loop import train_model
from keepfit.train.sft import ADAPTER_DIR, _batch, _Units
from keepfit.train.testing import chat_frame, snapshot_of


def _snapshot(n_train: int = 120):
    return snapshot_of(chat_frame(n_train, 0), chat_frame(24, 1), chat_frame(24, 2), task="text-generation",
                       labels=[])


def _config(model, **train) -> KeepfitConfig:
    settings = {"epochs": 6, "lr": 1e-2, "batch_size": 16, "precision": "fp32", "threads": 1,
                "checkpoint_every_steps": 1000, "strategy": "full", **train}
    return KeepfitConfig.model_validate({"task": "text-generation", "model": {"name": str(model)},
                                         "train": settings, "evaluate": {"max_new_tokens": 16}})


def _tok(tiny_lm):
    return load_causal_tokenizer(resolve_causal_model(tiny_lm))


def test_only_the_answer_and_its_eos_are_supervised(tiny_lm):
    tok = _tok(tiny_lm)
    messages = [{"role": "system", "content": "Answer with the intent as JSON."},
                {"role": "user", "content": "where is my parcel"},
                {"role": "assistant", "content": "earlier answer"},
                {"role": "user", "content": "refund it"}]
    answer = '{"intent": "refund"}'
    ids, labels = encode_example(tok, messages, answer, max_length=256)
    supervised = [t for t, y in zip(ids, labels, strict=True) if y != IGNORE]
    assert tok.decode(supervised) == answer + "<|im_end|>"
    assert supervised[-1] == tok.eos_token_id
    # the unsupervised part is exactly the chat template with the generation prompt: what generation starts from
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok.decode(ids[: len(ids) - len(supervised)]) == prompt
    assert "earlier answer" in prompt  # earlier assistant turns are context, not supervised


def test_over_long_examples_lose_prompt_tokens_from_the_start_not_the_answer(tiny_lm):
    tok = _tok(tiny_lm)
    messages = [{"role": "user", "content": " ".join(["the movie"] * 40)}]
    ids, labels = encode_example(tok, messages, '{"intent": "track"}', max_length=24)
    assert len(ids) == 24
    assert tok.decode([t for t, y in zip(ids, labels, strict=True) if y != IGNORE]) == '{"intent": "track"}<|im_end|>'


def test_packed_examples_score_exactly_as_alone(tiny_lm):
    tok, model = _tok(tiny_lm), load_causal_model(resolve_causal_model(tiny_lm)).eval()
    frame = chat_frame(6, 3)
    encoded = [encode_example(tok, messages_of(p), c, 256) for p, c in zip(frame.prompt, frame.completion, strict=True)]
    ids, labels = [e[0] for e in encoded], [e[1] for e in encoded]
    lengths = np.array([len(x) for x in ids])
    packs = pack_examples(lengths, int(lengths.sum() // 2 + lengths.max()), np.arange(len(ids)))
    assert 1 < len(packs) < len(ids) and sorted(sum(packs, [])) == list(range(len(ids)))
    packed = _Units(ids, labels, np.zeros(len(ids), dtype=bool), packs)
    alone = _Units(ids, labels, np.zeros(len(ids), dtype=bool), [[i] for i in range(len(ids))])
    with torch.no_grad():
        inputs, target = _batch(packed, np.arange(len(packs)), tok.pad_token_id, packed=True)
        loss_packed = causal_loss(model(**inputs).logits, target)
        inputs, target = _batch(alone, np.arange(len(ids)), tok.pad_token_id, packed=False)
        loss_alone = causal_loss(model(**inputs).logits, target)
    assert loss_packed.item() == pytest.approx(loss_alone.item(), rel=1e-5)


def test_distillation_is_zero_against_itself_and_only_on_chosen_rows():
    torch.manual_seed(0)
    logits, other = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, 5], [IGNORE, 1, 2, 3, 4]])
    both = torch.tensor([True, True])
    assert distill_loss(logits, logits, labels, both, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(logits, other, labels, both, 2.0).item() > 0
    assert distill_loss(logits, other, labels, torch.tensor([False, False]), 2.0).item() == 0.0
    changed = other.clone()
    changed[1] = logits[1]
    first = distill_loss(logits, changed, labels, torch.tensor([True, False]), 2.0)
    assert first.item() == pytest.approx(distill_loss(logits, other, labels, torch.tensor([True, False]), 2.0).item())


def test_fine_tuning_learns_the_answers_and_to_stop(tiny_lm, tmp_path):
    snap = _snapshot()
    tok, base = _tok(tiny_lm), load_causal_model(resolve_causal_model(tiny_lm))
    prompts = [messages_of(p) for p in snap.test.prompt]
    _, ended_before = generate_answers(base, tok, prompts, max_new_tokens=16)
    result = train_model(snap, _config(tiny_lm, epochs=40, lr=3e-3, weight_decay=0.0), tmp_path / "run",
                         progress=False)
    losses = [h["validation_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    answers, ended = load_generator(result.model_dir).answer(prompts, max_new_tokens=16)
    right = np.mean([a == c for a, c in zip(answers, snap.test.completion, strict=True)])
    assert ended.all() and not ended_before.all()
    assert right >= 0.8, answers[:4]  # the intent word decides; a constant answer scores 0.5
    meta = json.loads((result.model_dir / "keepfit.json").read_text())
    assert meta["task"] == "text-generation" and meta["supervised_tokens"] > 0


def test_export_round_trip_plain_transformers_generates_what_keepfit_generates(tiny_lm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    snap = _snapshot(64)
    result = train_model(snap, _config(tiny_lm, strategy="lora", epochs=2, lr=5e-3), tmp_path / "run",
                         progress=False)
    folder = result.model_dir
    prompts = [messages_of(p) for p in snap.test.prompt[:6]]
    mine, _ = load_generator(folder).answer(prompts, max_new_tokens=12)
    tok = AutoTokenizer.from_pretrained(str(folder))
    plain = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_lm)), str(folder / ADAPTER_DIR))
    for messages, expected in zip(prompts, mine, strict=True):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        for model in (plain, adapted.eval()):
            out = model.generate(**ids, max_new_tokens=12, do_sample=False)
            assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip() == expected


def test_pause_and_resume_end_with_the_same_weights(tiny_lm, tmp_path):
    from safetensors.torch import load_file

    snap, config = _snapshot(64), _config(tiny_lm, epochs=2, evals_per_epoch=2)
    straight = train_model(snap, config, tmp_path / "a", progress=False)
    paused = train_model(snap, config, tmp_path / "b", progress=False,
                         on_eval=lambda row: "pause" if row["epoch"] == 0.5 else None)
    assert paused.stopped_by == "pause"
    resumed = train_model(snap, config, tmp_path / "b", resume=True, progress=False)
    a = load_file(str(straight.model_dir / "model.safetensors"))
    b = load_file(str(resumed.model_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_head_strategy_is_refused_with_the_alternatives(tiny_lm, tmp_path):
    with pytest.raises(DataError, match="lora"):
        train_model(_snapshot(32), _config(tiny_lm, strategy="head"), tmp_path / "run", progress=False)


def test_the_data_check_counts_tokens_with_the_models_tokenizer(tiny_lm, tmp_path):
    from keepfit.data.check import check_files
    from keepfit.train.causal import token_counter

    short = {"messages": [{"role": "user", "content": "where is my parcel"},
                          {"role": "assistant", "content": '{"intent": "track"}'}]}
    long = {"messages": [{"role": "user", "content": " ".join(["the movie was really"] * 60)},
                         {"role": "assistant", "content": '{"intent": "refund"}'}]}
    path = tmp_path / "chat.jsonl"
    other = {"messages": [{"role": "user", "content": "cancel it"},
                          {"role": "assistant", "content": '{"intent": "cancel"}'}]}
    path.write_text("\n".join(json.dumps(x) for x in (short, long, other)) + "\n")
    config = KeepfitConfig.model_validate({"task": "text-generation", "model": {"name": str(tiny_lm)}})
    counter = token_counter(tiny_lm)
    assert counter.max_tokens == 256  # the tiny tokenizer's model_max_length
    result = check_files(path, config, count_tokens=counter)
    assert list(result.quarantine["reason"]) == ["too_long"] and len(result.kept) == 2
    capped = config.model_copy(update={"data": config.data.model_copy(update={"max_tokens": 10})})
    assert (check_files(path, capped, count_tokens=counter).quarantine["reason"] == "too_long").sum() == 3


def test_stages_that_do_not_cover_generation_yet_refuse_it_with_the_alternative(tmp_path):
    from keepfit.errors import ConfigError, ModelError
    from keepfit.serve.runtime import load_served_model
    from keepfit.train.onnx_export import export_onnx
    from keepfit.tune.auto import auto

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "keepfit.json").write_text(json.dumps({"task": "text-generation"}))
    config = KeepfitConfig.model_validate({"task": "text-generation", "store": str(tmp_path / "store")})
    with pytest.raises(ModelError, match="causal LM"):
        export_onnx(folder, tmp_path / "onnx")
    with pytest.raises(ConfigError, match="keepfit predict"):
        load_served_model(config, "1", folder)
    with pytest.raises(ConfigError, match="keepfit tune"):
        auto(config, budget="10m")
