"""A classification head on the mean of the token states, for encoders trained to be read that way.

Sentence encoders such as all-MiniLM-L6-v2 were trained with mean pooling; transformers'
``BertForSequenceClassification`` reads the pooled [CLS] state through a pooler layer those encoders never trained.
:class:`MeanPooledClassifier` is the encoder (``AutoModel``), the mask-weighted mean of its last hidden states,
dropout and one Linear layer. Its folder is the encoder's own Hugging Face folder (``AutoModel`` loads it as is)
plus the head's two tensors in ``keepfit_head.safetensors``; ``keepfit.json`` says ``"pooling": "mean"``. A
``config.json`` with ``"keepfit_normalize": true`` (few-shot models) has the head read the mean scaled to unit length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["HEAD_FILE", "NORMALIZE_KEY", "MeanPooledClassifier", "declares_mean_pooling", "mean_pool"]

HEAD_FILE = "keepfit_head.safetensors"
NORMALIZE_KEY = "keepfit_normalize"  # in the encoder's config: the head reads unit-length mean embeddings


def declares_mean_pooling(model_dir: Path) -> bool:
    """True when the folder is a sentence-transformers model whose pooling is the mean of the token states."""
    path = Path(model_dir) / "1_Pooling" / "config.json"
    if not path.exists():
        return False
    try:
        pooling = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    others = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_lasttoken")
    return bool(pooling.get("pooling_mode_mean_tokens")) and not any(pooling.get(k) for k in others)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` [B, T, H] over the positions where ``attention_mask`` [B, T] is 1, in float32."""
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPooledClassifier(nn.Module):
    """``encoder`` -> mean of the token states -> dropout -> Linear(hidden, num_labels).

    The encoder is kept under the architecture's own prefix (``bert.`` for BERT), so parameter names, the
    head/encoder split of the learning rates and layer-wise decay read as for transformers' own heads.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.config = encoder.config
        self.base_model_prefix = getattr(encoder, "base_model_prefix", "") or "encoder"
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the [CLS] pooler is not read: no untrained weights, no unused parameters
        self.add_module(self.base_model_prefix, encoder)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, num_labels)
        std = float(getattr(self.config, "initializer_range", 0.02) or 0.02)
        nn.init.normal_(self.classifier.weight, std=std)
        nn.init.zeros_(self.classifier.bias)
        self.num_labels = num_labels
        self.normalize = bool(getattr(self.config, NORMALIZE_KEY, False))

    @property
    def encoder_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix)

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder_model.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,  # peft and callers pass labels, return_dict, ...: the loss is computed outside
    ):
        from transformers.modeling_outputs import SequenceClassifierOutput

        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder_model(**inputs).last_hidden_state
        pooled = mean_pool(hidden, attention_mask)
        if self.normalize:  # what a contrastively tuned encoder learnt is the direction, not the length
            pooled = nn.functional.normalize(pooled, dim=-1)
        pooled = pooled.to(self.classifier.weight.dtype)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True, **kwargs: Any) -> None:
        """The encoder's folder (``AutoModel`` loads it) plus the head in ``keepfit_head.safetensors``."""
        from safetensors.torch import save_file

        self.encoder_model.config.num_labels = self.num_labels
        self.encoder_model.save_pretrained(str(path), safe_serialization=safe_serialization, **kwargs)
        head = {k: v.detach().contiguous().cpu() for k, v in self.classifier.state_dict().items()}
        save_file(head, str(Path(path) / HEAD_FILE))

    @classmethod
    def from_folder(cls, path: Path, config: Any, dropout: float, *, head: bool) -> MeanPooledClassifier:
        """The encoder in ``path`` (with ``config``) and a new head, or the head saved there (``head``)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        from keepfit.train.model import quiet_transformers

        with quiet_transformers():
            encoder = AutoModel.from_pretrained(str(path), config=config)
        model = cls(encoder, int(config.num_labels), dropout)
        if head:
            model.classifier.load_state_dict(load_file(str(Path(path) / HEAD_FILE)))
        return model
