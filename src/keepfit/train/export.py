"""The model folder: Hugging Face compatible (safetensors, config with the label map, tokenizer), plus
``keepfit.json`` (task, labels, target scaling, token cap, lineage), ``keepfit_postprocess.json`` (what the
predictor applies to the outputs, :mod:`keepfit.train.postprocess`) and a model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from keepfit._io import atomic_dir
from keepfit.train.postprocess import POSTPROCESS_FILE, Postprocessing

__all__ = ["export_model", "model_card"]


def _usage(pooling: str) -> str:
    if pooling == "mean":
        return """The head reads the mean of the token states (keepfit's mean pooling): `keepfit predict PATH in.csv
out.csv`, or in Python `keepfit.train.load_predictor("PATH").predict(texts)`. With plain transformers:

```python
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer
encoder, tokenizer = AutoModel.from_pretrained("PATH"), AutoTokenizer.from_pretrained("PATH")
head = load_file("PATH/keepfit_head.safetensors")  # weight [labels, hidden], bias [labels]
batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
mask = batch["attention_mask"].unsqueeze(-1).float()
pooled = (encoder(**batch).last_hidden_state * mask).sum(1) / mask.sum(1)
if encoder.config.to_dict().get("keepfit_normalize"):  # few-shot models read unit-length embeddings
    pooled = torch.nn.functional.normalize(pooled, dim=-1)
logits = pooled @ head["weight"].T + head["bias"]  # then keepfit_postprocess.json's temperature
```"""
    return """```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("PATH")
tokenizer = AutoTokenizer.from_pretrained("PATH")
```
or `keepfit predict PATH in.csv out.csv`."""


def model_card(meta: dict[str, Any], history: list[dict[str, Any]], config_yaml: str) -> str:
    """README.md naming the data snapshot, the config and the validation metrics."""
    from keepfit.train.fewshot import fewshot_summary

    last = history[-1] if history else {}
    metric_lines = (
        "\n".join(f"| {k} | {v:.4f} |" for k, v in last.items() if isinstance(v, float)) or "| - | - |"
    )
    labels = meta.get("labels") or []
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [keepfit]
---

# keepfit model

- task: {meta["task"]}
- base model: {meta.get("base_model")}
- strategy: {meta.get("strategy")}{fewshot_summary(meta)}
- data snapshot: `{meta.get("data_snapshot")}`
- config hash: `{meta.get("config_hash")}`
- labels ({len(labels)}): {", ".join(labels[:50])}{" ..." if len(labels) > 50 else ""}
- max length: {meta.get("max_length")} tokens

## Validation metrics (best checkpoint, epoch {meta.get("best_epoch")})

| metric | value |
|---|---|
{metric_lines}

## Use

{_usage(meta.get("pooling", "cls"))}

## Config

```yaml
{config_yaml}```
"""


def export_model(
    model: nn.Module,
    tokenizer,
    out: Path,
    meta: dict[str, Any],
    card: str,
    postprocessing: Postprocessing | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the model folder atomically (an existing one is replaced only once the new one is complete);
    ``extra`` writes more files into the folder before it is complete (a LoRA adapter)."""
    from keepfit.train.model import quiet_transformers

    with atomic_dir(Path(out), overwrite=True) as tmp, quiet_transformers():
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "keepfit.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if postprocessing is not None:
            (tmp / POSTPROCESS_FILE).write_text(postprocessing.to_json(), encoding="utf-8")
        if extra is not None:
            extra(tmp)
    return Path(out)
