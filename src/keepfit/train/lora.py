"""LoRA adapters (peft) on the attention query/value projections, merged into plain weights for export."""

from __future__ import annotations

from torch import nn

from keepfit.config import TrainConfig

__all__ = ["add_lora", "merge_lora", "lora_targets"]


def lora_targets(model: nn.Module) -> list[str] | str:
    """Query/value projection names of this architecture (BERT: query/value; Llama-like: q_proj/v_proj)."""
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    for pair in (["query", "value"], ["q_proj", "v_proj"], ["q_lin", "v_lin"], ["Wqkv"]):
        if set(pair) <= leaves:
            return pair
    return "all-linear"


def add_lora(model: nn.Module, config: TrainConfig, *, causal: bool = False) -> nn.Module:
    """The model with LoRA adapters; only adapters (and a classifier's head) train. ``causal``: a causal LM,
    whose output layer stays frozen (it is the tied input embedding)."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM if causal else TaskType.SEQ_CLS,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model),
    )
    return get_peft_model(model, lora)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights: plain transformers loads the result."""
    return model.merge_and_unload()
